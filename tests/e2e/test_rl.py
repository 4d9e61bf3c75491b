"""`alignkit rl` end to end: every preset trains, reward rises on an easy task, resume is exact."""

import math

import pytest
import torch
from helpers import interrupt_on_call, rl_flags, run_cli
from transformers import AutoModelForCausalLM

from alignkit.metrics.logger import read_metrics

PRESETS = ["ppo", "grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "dapo", "gspo"]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_trains(preset, tiny_dir, tmp_path):
    assert run_cli("rl", "--preset", preset, *rl_flags(tiny_dir, tmp_path, 2)) == 0
    rows = read_metrics(tmp_path / "rl")
    assert [r["step"] for r in rows] == [1, 2]
    last = rows[-1]
    for key in ("reward/mean", "reward/std", "reward/sevens", "entropy", "response_length/mean",
                "response_length/max", "response_length/truncated_frac", "clip_frac", "advantages/mean",
                "timing/generate", "timing/score", "timing/logprobs", "timing/train", "timing/sync", "loss"):
        assert key in last, key
        assert last[key] is None or math.isfinite(last[key]), key
    if preset == "ppo":
        assert "critic/value_loss" in last and "kl" in last
    if preset == "dapo":
        assert "dynamic_sampling/dropped_groups" in last
    before = AutoModelForCausalLM.from_pretrained(tiny_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "rl" / "final").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "rl" / "report.png").stat().st_size > 1000


def test_grpo_reward_rises(tiny_dir, tmp_path):
    flags = rl_flags(tiny_dir, tmp_path, 30, **{"train.lr": 1e-2, "rollout.n_samples_per_prompt": 8,
                                                "train.batch_size": 8, "rollout.max_new_tokens": 4})
    assert run_cli("rl", "--preset", "grpo", *flags) == 0
    r = [row["reward/mean"] for row in read_metrics(tmp_path / "rl")]
    first, last = sum(r[:5]) / 5, sum(r[-5:]) / 5
    assert last > first + 0.5, r  # measured: 0.004 -> 0.98


def test_rl_resume_is_exact(tiny_dir, tmp_path, monkeypatch):
    from alignkit.trainers.rl.online_rl import OnlineRL

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    extra = {"checkpoint.save_steps": 2, "algo.kl_coef": 0.05}
    assert run_cli("rl", "--preset", "grpo", *rl_flags(tiny_dir, a, 4, **extra)) == 0
    with monkeypatch.context() as m:
        interrupt_on_call(m, OnlineRL, "step", 4)
        assert run_cli("rl", "--preset", "grpo", *rl_flags(tiny_dir, b, 4, **extra)) == 130
    assert run_cli("rl", "--preset", "grpo", *rl_flags(tiny_dir, b, 4, **extra), "--resume") == 0
    ra, rb = read_metrics(a / "rl"), read_metrics(b / "rl")
    assert [r["step"] for r in rb] == [1, 2, 3, 4]
    for key in ("reward/mean", "loss", "kl"):
        assert [r[key] for r in ra] == [r[key] for r in rb], key
    wa = AutoModelForCausalLM.from_pretrained(a / "rl" / "final").state_dict()
    wb = AutoModelForCausalLM.from_pretrained(b / "rl" / "final").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_rl_config_errors(tiny_dir, tmp_path, capsys):
    flags = rl_flags(tiny_dir, tmp_path, 1)
    assert run_cli("rl", "--preset", "grpo", *flags, "--rollout.n_samples_per_prompt", 1) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--algo.advantage grpo compares samples of the same prompt: --rollout.n_samples_per_prompt must be at least 2, got 1")
    assert run_cli("rl", "--preset", "grpoo", *flags) == 2
    assert "unknown preset 'grpoo'; did you mean 'grpo'?" in capsys.readouterr().err
    i = flags.index("--reward.function")
    assert run_cli("rl", *flags[:i], *flags[i + 2 :]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "no reward: give --reward.rules, --reward.function, --reward.model_path or --reward.urls")
