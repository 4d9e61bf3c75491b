"""Multi-turn rollouts with the HF engine on the tiny fp32 model: the trained ids are the sampled ids,
and the trainer's log-probs of them (models/forward.py on the packed trajectories) equal the engine's
sampling log-probs; the one-step environment reproduces single-turn generation and scoring."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignkit.config.sampling import SamplingParams
from alignkit.data.packing import pack_rows, unpack
from alignkit.data.synth import make_records
from alignkit.envs.loop import Episode, Limits, run_episodes
from alignkit.envs.reward_env import RewardEnv
from alignkit.envs.rows import to_rows
from alignkit.models.forward import causal_forward
from alignkit.rewards.rules import build_rule
from alignkit.rollout.hf import HFEngine

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "envs"))
from envs_helpers import QWEN3_TEMPLATE  # noqa: E402


class Recording:
    """Wraps an engine and keeps every generation it returns."""

    def __init__(self, engine):
        self.engine, self.gens = engine, []

    def generate(self, prompts, params):
        out = self.engine.generate(prompts, params)
        self.gens.append(out)
        return out


class Talk:
    """Three turns: a tool result, then a user message, then the end; rewards 0.1, 0.2, 1."""

    def reset(self, seed=None, **record):
        return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": record["prompt"]}], {}

    def step(self, action):
        self.k = getattr(self, "k", 0) + 1
        if self.k == 1:
            return {"role": "tool", "content": "result 7"}, 0.1, False, False, {}
        if self.k == 2:
            return "And now?", 0.2, False, False, {}
        return None, 1.0, True, False, {}


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    tokenizer.chat_template = QWEN3_TEMPLATE
    return model, tokenizer


def test_trained_ids_and_logprobs_match_the_engine(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    engine = Recording(HFEngine(model, tokenizer))
    episodes = [Episode({"prompt": f"question {i}"}, group=i // 2) for i in range(6)]
    params = SamplingParams(temperature=0.7, max_new_tokens=8, seed=3)
    trajs = run_episodes(engine, tokenizer, Talk, episodes, params, Limits(max_tokens=200),
                         template_kwargs={"enable_thinking": False})
    assert [len(t.turns) for t in trajs] == [3] * 6 and all(t.reward == pytest.approx(1.3) for t in trajs)
    assert [len(wave) for wave in engine.gens] == [6, 6, 6]  # one engine call per wave, every episode in it
    for k, wave in enumerate(engine.gens):
        for t, gen in zip(trajs, wave, strict=True):
            turn = t.turns[k]
            assert t.ids[turn.start:turn.end] == gen.response_ids and t.logprobs[turn.start:turn.end] == gen.logprobs
    rows = to_rows(trajs, tokenizer.pad_token_id)
    packed, index = pack_rows(rows["input_ids"], rows["lengths"], tokenizer.pad_token_id, capacity=0)
    with torch.no_grad():
        lp, _ = causal_forward(model, packed, temperature=0.7)
    trainer = unpack(lp, index)
    mask = rows["response_mask"].bool()
    assert int(mask.sum()) == sum(len(g.response_ids) for wave in engine.gens for g in wave)
    assert (trainer[mask] - rows["behaviour_logp"][mask]).abs().max().item() < 1e-5


def test_one_step_environment_is_single_turn_generation(model_and_tokenizer, tokenizer):
    model, _ = model_and_tokenizer
    engine = HFEngine(model, tokenizer)  # the plain tiny tokenizer: arithmetic prompts are raw text
    records = make_records("arithmetic", "prompt", 6, seed=1)
    params = SamplingParams(temperature=1.0, max_new_tokens=6, seed=11)
    exact = build_rule("exact")
    trajs = run_episodes(engine, tokenizer, lambda: RewardEnv(exact), [Episode(r) for r in records], params,
                         Limits(max_turns=1), raw_text=True)
    prompts = [tokenizer(r["prompt"])["input_ids"] for r in records]
    gens = engine.generate(prompts, params)
    for t, prompt, gen, rec in zip(trajs, prompts, gens, records, strict=True):
        assert t.ids == prompt + gen.response_ids and t.prompt_ids == prompt and len(t.turns) == 1
        assert t.reward == float(gen.text.strip() == rec["label"]) and not t.truncated
