"""`alignkit rl` with --agent, --env.gem and --env.tools, end to end on the tiny model: agent code
driving the model with the `openai` client, a gem-llm game, and the tool environment; every trained
row holds exactly the sampled tokens, and the failure paths of --agent end as the failure rule says.

The random tiny model neither calls tools nor plays Guess the Number, so the runs that need it to
use the `scripted` fixture: the rollout engine says what a script says, with the model's own
log-probs of those tokens (as if it had sampled them), so the trainer's log-probs must match them."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from helpers import run_cli, spans

from alignkit.envs.calculator_task import tool_call_text
from alignkit.metrics.logger import read_metrics

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "envs"))
from envs_helpers import ScriptedEngine, binary_search  # noqa: E402

pytest.importorskip("openai", reason="--agent drives the model with the openai client")

ROOT = Path(__file__).parents[2]
CALC = [{"prompt": "12*34=", "label": "408"}, {"prompt": "56*78=", "label": "4368"}]


def rl_flags(model, tmp_path, records, **extra):
    """One GRPO step on `records`, 2 trajectories each."""
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    flags = ["--preset", "grpo", "--model.path", model, "--data.train_files", tmp_path / "prompts.jsonl",
             "--output_dir", tmp_path / "rl", "--train.max_steps", 1, "--train.batch_size", len(records),
             "--train.micro_batch_size", 16, "--rollout.n_samples_per_prompt", 2, "--rollout.max_new_tokens", 6,
             "--train.lr", 1e-3, "--env.max_tokens", 200, "--logging.progress", "false"]
    for k, v in extra.items():
        flags += [f"--{k}", v]
    return flags


def model_logprobs(model, prompt: list[int], ids: list[int], temperature: float) -> list[float]:
    """log p(ids[j] | prompt + ids[:j]) under `model` at `temperature` (the engine's sampling log-probs)."""
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + ids], device=model.device)).logits[0, len(prompt) - 1:-1].float()
    logp = torch.log_softmax(logits / (temperature or 1.0), -1)
    return logp[torch.arange(len(ids)), torch.tensor(ids)].tolist()


@pytest.fixture
def scripted(monkeypatch):
    """`scripted(reply)`: the HF engine's samples become `reply(prompt_text)` (tokenised, closed by
    <|im_end|>, as envs_helpers.ScriptedEngine makes them) with the model's log-probs of those
    tokens. Returns the list every sampled id list is appended to."""
    from alignkit.rollout.hf import HFEngine

    sampled: list[list[int]] = []

    def script(reply):
        def generate(self, prompts, params):
            gens = ScriptedEngine(self.tokenizer, reply).generate(prompts, params)
            sampled.extend(g.response_ids for g in gens)
            return [dataclasses.replace(g, logprobs=model_logprobs(self.model, prompts[g.prompt_index],
                                                                   g.response_ids, params.temperature))
                    for g in gens]

        monkeypatch.setattr(HFEngine, "generate", generate)
        return sampled

    return script


def calculator(prompt: str) -> str:
    """Calls calc on the question (56*78 written wrongly), then copies a result, or gives up on an error."""
    if "<|im_start|>tool" not in prompt:
        a, b = re.search(r"(\d+)\*(\d+)=", prompt).groups()
        return tool_call_text(f"{a}*{b}" if a == "12" else f"{a}x{b}")
    result = prompt.rsplit("<|im_start|>tool\n", 1)[1].split("<|im_end|>")[0]
    return result if result.isdigit() else "no idea"


def check_token_exact(exp, sampled, tokenizer) -> list[str]:
    """Every trained span of every row is a sampled id list, each sampled once; returns the text the
    template and the tools added between turns, row by row."""
    turns = [exp.input_ids[i, s:e].tolist() for i in range(exp.n) for s, e in spans(exp.response_mask[i])]
    assert Counter(map(tuple, turns)) == Counter(map(tuple, sampled))
    added = []
    for i in range(exp.n):
        (_, e1), (s2, _) = spans(exp.response_mask[i])
        added.append(tokenizer.decode(exp.input_ids[i, e1:s2]))
    return added


def test_agent_with_tool_calls_trains_the_sampled_tokens(tiny_dir, tokenizer, tmp_path, scripted, captured, caplog):
    """examples/agents/calculator.py:run, unchanged OpenAI-client code: two turns per run (a call,
    then the answer); each run's reward is the agent's return value. The client's requests are not
    logged one by one."""
    sampled = scripted(calculator)
    flags = rl_flags(tiny_dir, tmp_path, CALC, **{"agent": ROOT / "examples/agents/calculator.py:run",
                                                   "rollout.max_new_tokens": 80})
    with caplog.at_level(logging.INFO):
        assert run_cli("rl", *flags) == 0
    assert not [m for m in caplog.messages if "HTTP Request" in m]
    (row,) = read_metrics(tmp_path / "rl")
    # 12*34: the call, then 408 (reward 1); 56*78: the call fails in the agent's own calc, then "no idea" (0)
    assert row["reward/mean"] == 0.5 and row["sequences"] == 4 and row["env/failed"] == 0
    assert row["env/turns_mean"] == 2 and row["env/turns_max"] == 2
    # the endpoint counts the calls it parsed (all well-formed); running them is the agent's business
    assert row["env/tool_calls_mean"] == 1 and row["env/tool_success_rate"] == 1
    assert row["logprob_mismatch/mean_abs"] < 1e-5
    exp = captured["exp"][0]
    added = check_token_exact(exp, sampled, tokenizer)
    assert sorted(added) == ["\n<|im_start|>tool\n408<|im_end|>\n<|im_start|>assistant\n"] * 2 + [
        "\n<|im_start|>tool\nerror: cannot evaluate '56x78': write two integers joined by '*'<|im_end|>\n"
        "<|im_start|>assistant\n"] * 2
    assert sorted(exp.rewards.tolist()) == [0, 0, 1, 1]


def test_tool_environment_scores_the_final_answer(tiny_dir, tokenizer, tmp_path, scripted, captured):
    """--env.tools with --reward.rules exact: the same task in the tool environment, which runs the
    calls itself, so the malformed expression counts as a failed call."""
    sampled = scripted(calculator)
    flags = rl_flags(tiny_dir, tmp_path, CALC, **{"env.tools": ROOT / "examples/agents/calculator.py:calc",
                                                   "env.tool_parser": "hermes", "reward.rules": "exact",
                                                   "rollout.max_new_tokens": 80})
    assert run_cli("rl", *flags) == 0
    (row,) = read_metrics(tmp_path / "rl")
    assert row["reward/mean"] == 0.5 and row["env/turns_mean"] == 2 and row["env/failed"] == 0
    assert row["env/tool_calls_mean"] == 1 and row["env/tool_success_rate"] == 0.5
    assert row["logprob_mismatch/mean_abs"] < 1e-5
    added = check_token_exact(captured["exp"][0], sampled, tokenizer)
    assert sum("<|im_start|>tool\n408<|im_end|>" in a for a in added) == 2
    assert sum("cannot evaluate '56x78'" in a for a in added) == 2


def test_gem_guess_the_number(tiny_dir, tokenizer, tmp_path, scripted, captured):
    """--env.gem game:GuessTheNumber-v0-easy played by bisection: every game won within 4 guesses,
    gem's hints between the turns, untrained."""
    sampled = scripted(binary_search)
    flags = rl_flags(tiny_dir, tmp_path, [{"prompt": "game"}] * 2, **{"env.gem": "game:GuessTheNumber-v0-easy",
                                                                    "rollout.max_new_tokens": 32, "env.max_tokens": 400})
    assert run_cli("rl", *flags) == 0
    (row,) = read_metrics(tmp_path / "rl")
    assert row["reward/mean"] == 1 and row["env/failed"] == 0 and row["env/truncated_rate"] == 0
    assert 1 <= row["env/turns_mean"] <= row["env/turns_max"] <= 4
    assert row["env/turns_mean"] * 4 == len(sampled)  # one turn per sample of 4 trajectories
    assert row["logprob_mismatch/mean_abs"] < 1e-5
    exp = captured["exp"][0]
    turns = [exp.input_ids[i, s:e].tolist() for i in range(exp.n) for s, e in spans(exp.response_mask[i])]
    assert Counter(map(tuple, turns)) == Counter(map(tuple, sampled))
    assert "You are playing Guess The Number." in tokenizer.decode(exp.input_ids[0])
    assert row["env/env_tokens_mean"] > 0
    for i in range(exp.n):
        (_, e1), (s2, _), *_ = spans(exp.response_mask[i])  # the first guess (5) is never right here
        assert tokenizer.decode(exp.input_ids[i, e1:s2]).startswith("\n<|im_start|>user\nAt turn 1, you guessed 5")


AGENT = '''
import json
import time


def run(client, record):
    """Two questions; the reward is the share of vowels in the answers. A record's `how` makes it fail."""
    if record["how"] == "raise":
        raise ValueError("no agent today")
    if record["how"] == "hang":
        time.sleep(5)
        return 1.0
    messages, ids, text = [{"role": "user", "content": record["prompt"]}], [], ""
    for _ in range(2):
        choice = client.chat.completions.create(model="policy", messages=messages).choices[0]
        ids.append(choice.model_extra["token_ids"])
        text += choice.message.content
        messages += [choice.message.model_dump(exclude_none=True), {"role": "user", "content": "again"}]
    reward = sum(c in "aeiou" for c in text) / max(len(text), 1)
    with open(LOG, "a") as f:
        f.write(json.dumps({"ids": ids, "reward": reward}) + "\\n")
    return reward
'''


def test_agent_runs_that_raise_or_hang_are_dropped_counted_and_logged(tiny_dir, tmp_path, caplog, captured):
    """The tiny model sampling for agent code: the runs that raise, or run past --env.agent_timeout_s,
    are dropped and counted (the hung ones cost their 1 s limit, not their 5 s); the rest train
    exactly the token ids the endpoint returned to the agent, with the agent's rewards."""
    log = tmp_path / "runs.jsonl"
    (tmp_path / "agent.py").write_text(AGENT.replace("LOG", repr(str(log))))
    records = [{"prompt": "say hi", "how": how} for how in ("raise", "hang", "ok", "ok")]
    flags = rl_flags(tiny_dir, tmp_path, records, **{"agent": f"{tmp_path / 'agent.py'}:run",
                                                     "env.agent_timeout_s": 1})
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        assert run_cli("rl", *flags) == 0
    (row,) = read_metrics(tmp_path / "rl")
    assert row["env/failed"] == 4 and row["env/failed_rate"] == 0.5 and row["sequences"] == 4
    assert row["env/turns_mean"] == 2 and row["step_time_s"] < 4
    assert row["logprob_mismatch/mean_abs"] < 1e-5
    raised = next(i for i, line in enumerate(AGENT.splitlines(), 1) if "no agent today" in line)
    failures = sorted(re.sub(r"run \d \(group \d\)", "run", m) for m in caplog.messages if "failed:" in m)
    assert failures == [f"agent run failed: ValueError: no agent today (agent.py:{raised})"] * 2 + [
        "agent run failed: timed out after 1 s (--env.agent_timeout_s)"] * 2
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    exp = captured["exp"][0]
    assert exp.n == 4 and len(runs) == 4
    turns = Counter(tuple(exp.input_ids[i, s:e].tolist()) for i in range(exp.n) for s, e in spans(exp.response_mask[i]))
    assert turns == Counter(tuple(ids) for r in runs for ids in r["ids"])
    assert sorted(exp.rewards.tolist()) == pytest.approx(sorted(r["reward"] for r in runs))
    assert row["reward/mean"] == pytest.approx(sum(r["reward"] for r in runs) / 4)
