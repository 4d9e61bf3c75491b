"""`alignkit rl` with an environment (--env.class): every preset trains on two-turn trajectories whose
rows carry the sampled tokens only, with per-turn credit for the token-level estimators and the
trajectory's reward for the group ones; the failure paths end as the failure rule says."""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch
from helpers import run_cli, spans

from alignkit.metrics.logger import read_metrics

PRESETS = ["ppo", "grpo", "dr_grpo", "reinforce_pp", "rloo", "dapo", "gspo"]

ENV = '''
import time


class Vowels:
    """Two turns; each answer earns the share of vowels in it. A record's `how` makes it fail."""

    def reset(self, seed=None, **record):
        self.turn, self.how = 0, record.get("how", "ok")
        if self.how == "reset":
            raise ValueError("no game")
        return record["prompt"], {}

    def step(self, action):
        self.turn += 1
        if self.how == "step":
            raise RuntimeError("the board broke")
        if self.how == "hang":
            time.sleep(5)
        reward = sum(c in "aeiou" for c in action) / max(len(action), 1)
        if self.turn == 2:
            return None, reward, True, False, {}
        return "again", reward, False, False, {}
'''


def line_of(text: str) -> int:
    """The line of ENV (as written to envs.py) that contains `text`."""
    return next(i for i, line in enumerate(ENV.splitlines(), 1) if text in line)


def env_flags(model, tmp_path, steps=1, records=None, **extra):
    """A tiny two-turn run: 2 prompts x 4 trajectories per step, 6 tokens a turn."""
    (tmp_path / "envs.py").write_text(ENV)
    records = records or [{"prompt": f"say {w}"} for w in ("hello", "tea", "sky", "moon")]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    flags = ["--model.path", model, "--data.train_files", tmp_path / "prompts.jsonl", "--output_dir", tmp_path / "rl",
             "--train.max_steps", steps, "--train.batch_size", 2, "--train.micro_batch_size", 16,
             "--rollout.n_samples_per_prompt", 4, "--rollout.max_new_tokens", 6, "--train.lr", 1e-3,
             "--env.class", f"{tmp_path / 'envs.py'}:Vowels", "--env.max_tokens", 40, "--logging.progress", "false"]
    for k, v in extra.items():
        flags += [f"--{k}", v]
    return flags


def check_rows(exp) -> None:
    """Two turns per row, environment tokens between them untrained; sampling log-probs on the sampled
    tokens only; each turn's reward at its last sampled token, summing to the trajectory's reward."""
    for i in range(exp.n):
        turns = spans(exp.response_mask[i])
        assert len(turns) == 2, turns
        assert (exp.behaviour_logp[i][exp.response_mask[i] == 0] == 0).all()
        assert (exp.behaviour_logp[i][exp.response_mask[i] == 1] < 0).all()
        ends = torch.zeros_like(exp.turn_rewards[i])
        ends[[e - 1 for _, e in turns]] = 1
        assert (exp.turn_rewards[i][ends == 0] == 0).all()
    torch.testing.assert_close(exp.turn_rewards.sum(-1), exp.rewards)


def check_group_credit(exp) -> None:
    """A group estimator sees the trajectory's reward: one advantage per row, (r - mean) / (std + eps)."""
    first = exp.response_mask.argmax(-1)
    adv = exp.advantages[torch.arange(exp.n), first]
    torch.testing.assert_close(exp.advantages, adv[:, None] * exp.response_mask)
    for g in exp.group_ids.unique():
        r = exp.rewards[exp.group_ids == g]
        torch.testing.assert_close(adv[exp.group_ids == g], (r - r.mean()) / (r.std() + 1e-6))


def check_turn_credit(exp) -> None:
    """REINFORCE++ (gamma 1): the return of a first-turn token is both turns' rewards, of a second-turn
    token the second turn's only."""
    for i in range(exp.n):
        (s1, _), (s2, e2) = spans(exp.response_mask[i])
        assert float(exp.returns[i, s1]) == pytest.approx(float(exp.rewards[i]), abs=1e-6)
        assert float(exp.returns[i, s2]) == pytest.approx(float(exp.turn_rewards[i, e2 - 1]), abs=1e-6)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_trains_on_trajectories(preset, tiny_dir, tmp_path, captured):
    extra = {"env.max_tokens": 20, "algo.overlong_filter": "true"} if preset == "dapo" else {}
    if preset == "gspo":
        extra = {"algo.mini_batches": 2}
    assert run_cli("rl", "--preset", preset, *env_flags(tiny_dir, tmp_path, **extra)) == 0
    (row,) = read_metrics(tmp_path / "rl")
    assert row["env/turns_max"] == 2 and row["env/failed"] == 0
    assert row["env/model_tokens_mean"] > 2 and row["env/env_tokens_mean"] > 0
    assert row["logprob_mismatch/mean_abs"] < 1e-4  # the trainer's log-probs of the sampled tokens
    exp = captured["exp"][0]
    if preset == "dapo":
        # overlong filtering: a trajectory cut by --env.max_tokens 20 (no room for the observation
        # after a 6-token first turn) trains nothing; overlong shaping lowers long trajectories' rewards
        cut = exp.response_mask.sum(-1) == 0
        assert cut.any() and not cut.all() and row["env/truncated_rate/max_tokens"] > 0
        penalty = exp.rewards - exp.turn_rewards.sum(-1)
        assert (penalty <= 1e-6).all() and (penalty >= -1 - 1e-6).all() and (penalty < 0).any()
        return
    assert row["env/turns_mean"] == 2
    check_rows(exp)
    if preset in ("grpo", "gspo"):
        check_group_credit(exp)
    if preset == "reinforce_pp":
        check_turn_credit(exp)
    if preset == "ppo":
        assert exp.values is not None and row["critic/value_loss"] > 0
    assert set(captured["ratio"]) == ({"sequence"} if preset == "gspo" else {"token"})


def test_failed_trajectories_are_dropped_counted_and_logged(tiny_dir, tmp_path, caplog, captured):
    """Reset raising, step raising and a step that hangs past --env.step_timeout_s: those trajectories
    are dropped (the rest train), counted in env/failed, logged with the exception; the hung ones
    stall nobody beyond the limit."""
    records = [{"prompt": "say hi", "how": how} for how in ("reset", "step", "hang", "ok")]
    flags = env_flags(tiny_dir, tmp_path, records=records, **{"train.batch_size": 4, "rollout.n_samples_per_prompt": 2,
                                                            "env.step_timeout_s": 1})
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        assert run_cli("rl", "--preset", "grpo", *flags) == 0
    (row,) = read_metrics(tmp_path / "rl")
    assert row["env/failed"] == 6 and row["env/failed_rate"] == 0.75 and row["sequences"] == 2
    assert row["step_time_s"] < 4  # the hung steps cost their 1 s limit, not their 5 s
    assert captured["exp"][0].n == 2 and row["env/turns_mean"] == 2  # the two good trajectories, whole
    failures = {re.sub(r"episode \d \(group \d\)", "episode", m) for m in caplog.messages if "failed at" in m}
    assert failures == {
        f"multi-turn episode failed at reset: ValueError: no game (envs.py:{line_of('no game')})",
        f"multi-turn episode failed at step 1: RuntimeError: the board broke (envs.py:{line_of('board broke')})",
        "multi-turn episode failed at step 1: timed out after 1 s (--env.step_timeout_s)",
    }


def test_a_step_whose_every_trajectory_fails_stops_the_run(tiny_dir, tmp_path, capsys):
    records = [{"prompt": "say hi", "how": "step"}] * 2
    assert run_cli("rl", "--preset", "grpo", *env_flags(tiny_dir, tmp_path, records=records)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("alignkit rl: error: all 8 multi-turn trajectories failed; the first (episode 0): "
                       f"step 1: RuntimeError: the board broke (envs.py:{line_of('board broke')})")


def test_a_bad_env_class_is_a_one_line_config_error(tiny_dir, tmp_path, capsys):
    flags = env_flags(tiny_dir, tmp_path)
    i = flags.index("--env.class") + 1
    flags[i] = str(tmp_path / "nope.py") + ":Vowels"
    assert run_cli("rl", "--preset", "grpo", *flags) == 2
    assert capsys.readouterr().err.strip() == f"alignkit rl: error: --env.class: file not found: {tmp_path / 'nope.py'}"
    flags[i] = str(tmp_path / "envs.py") + ":Nope"
    assert run_cli("rl", "--preset", "grpo", *flags) == 2
    assert capsys.readouterr().err.strip() == (
        f"alignkit rl: error: --env.class: {tmp_path / 'envs.py'} defines no 'Nope' (callables in it: Vowels)")


def test_multiturn_resume_is_exact(tiny_dir, tmp_path, monkeypatch):
    """Interrupted after a checkpoint at step 2 and resumed: the same games in the same order (the
    prompt stream's position, the episodes' seeds), so the same metrics and weights as one run."""
    from helpers import interrupt_on_call
    from transformers import AutoModelForCausalLM

    from alignkit.trainers.rl.online_rl import OnlineRL

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    extra = {"checkpoint.save_steps": 2, "algo.kl_coef": 0.05}
    assert run_cli("rl", "--preset", "reinforce_pp", *env_flags(tiny_dir, a, 3, **extra)) == 0
    with monkeypatch.context() as m:
        interrupt_on_call(m, OnlineRL, "step", 3)
        assert run_cli("rl", "--preset", "reinforce_pp", *env_flags(tiny_dir, b, 3, **extra)) == 130
    assert run_cli("rl", "--preset", "reinforce_pp", *env_flags(tiny_dir, b, 3, **extra), "--resume") == 0
    ra, rb = read_metrics(a / "rl"), read_metrics(b / "rl")
    assert [r["step"] for r in rb] == [1, 2, 3]
    for key in ("reward/mean", "loss", "kl", "env/model_tokens_mean", "env/env_tokens_mean"):
        assert [r[key] for r in ra] == [r[key] for r in rb], key
    wa = AutoModelForCausalLM.from_pretrained(a / "rl" / "final").state_dict()
    wb = AutoModelForCausalLM.from_pretrained(b / "rl" / "final").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
