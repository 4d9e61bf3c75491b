"""`alignkit rl` end to end: every preset trains and its distinguishing settings show in the tensors and
metrics of the run, reward rises on an easy task, resume is exact."""

import math

import pytest
import torch
from helpers import interrupt_on_call, rl_flags, run_cli
from transformers import AutoModelForCausalLM

from alignkit.algos.shaping import overlong_penalty
from alignkit.metrics.logger import read_metrics

PRESETS = ["ppo", "grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "dapo", "gspo"]


@pytest.fixture
def captured(monkeypatch):
    """What the real code made in a run: the Experience of every step, and the importance ratio of every
    policy-loss call (its level and value)."""
    from alignkit.algos.losses import policy
    from alignkit.trainers.rl.online_rl import OnlineRL

    seen = {"exp": [], "ratio": []}
    make = OnlineRL.make_experience
    monkeypatch.setattr(OnlineRL, "make_experience", lambda self, *a: seen["exp"].append(make(self, *a)) or seen["exp"][-1])
    for level, fn in list(policy.RATIOS.items()):
        def spy(*a, fn=fn, level=level):
            seen["ratio"].append((level, r := fn(*a)))
            return r
        monkeypatch.setitem(policy.RATIOS, level, spy)
    return seen


def _per_sequence(exp) -> torch.Tensor:
    """The advantage of each row, asserting it is the same on all the row's response tokens."""
    first = exp.response_mask.argmax(-1)
    adv = exp.advantages[torch.arange(exp.n), first]
    torch.testing.assert_close(exp.advantages, adv[:, None] * exp.response_mask)
    return adv


def _groups(exp):
    return [(exp.group_ids == g).nonzero().flatten() for g in exp.group_ids.unique()]


def _whitened(exps) -> None:
    """Zero mean and unit std over the response tokens of each step's batch (a step whose returns were
    all equal, say every reward 0 before the policy moves, whitens to all zeros)."""
    for exp in exps:
        a = exp.advantages[exp.response_mask.bool()]
        assert float(a.mean()) == pytest.approx(0.0, abs=1e-5)
        assert float(a.pow(2).mean().sqrt()) == pytest.approx(1.0, abs=1e-4) or not a.any()
    assert any(exp.advantages.any() for exp in exps)


def check_grpo(rows, seen):
    exp = seen["exp"][0]
    adv = _per_sequence(exp)
    for i in _groups(exp):  # (r - group mean) / (group std + eps)
        r = exp.rewards[i]
        torch.testing.assert_close(adv[i], (r - r.mean()) / (r.std() + 1e-6))
    _kl_in_the_loss(rows)


def _kl_in_the_loss(rows):
    """The KL term is a part of the optimised loss: 0.04 * k3 >= 0, positive exactly when the policy has
    left the reference (at step 1 they are one model)."""
    for row in rows:
        assert row["loss"] == pytest.approx(row["pg_loss"] + row["kl_loss"])
        assert row["kl_loss"] >= 0 and (row["kl_loss"] > 0) == (row["kl"] > 0)
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)


def check_dr_grpo(rows, seen):
    exp = seen["exp"][0]
    adv = _per_sequence(exp)
    for i in _groups(exp):  # no std division
        torch.testing.assert_close(adv[i], exp.rewards[i] - exp.rewards[i].mean())
    assert "kl" not in rows[1] and "kl_loss" not in rows[1]  # no reference at all


def check_rloo(rows, seen):
    exp = seen["exp"][0]  # step 1: the policy is the reference, so the KL in the reward is 0
    adv = _per_sequence(exp)
    for i in _groups(exp):
        r = exp.rewards[i]
        torch.testing.assert_close(adv[i], r - (r.sum() - r) / (len(i) - 1), atol=1e-5, rtol=0)
    assert "kl" in rows[1] and "kl_loss" not in rows[1]  # the KL is in the reward


def check_ppo(rows, seen):
    assert all(exp.values is not None for exp in seen["exp"]) and rows[1]["critic/value_loss"] > 0
    _whitened(seen["exp"])  # --algo.whiten_advantages, on in the ppo preset
    assert "kl" in rows[1] and "kl_loss" not in rows[1]


def check_reinforce_pp(rows, seen):
    _whitened(seen["exp"])
    assert "kl_loss" not in rows[1]


def check_reinforce_pp_baseline(rows, seen):
    _whitened(seen["exp"])
    _kl_in_the_loss(rows)


def check_dapo(rows, seen):
    for row, exp in zip(rows, seen["exp"], strict=True):
        lengths = exp.response_mask.sum(-1)  # overlong shaping within 4 tokens of the 6-token limit
        assert row["reward/mean"] == pytest.approx(row["reward/sevens"] + float(overlong_penalty(lengths, 6, 4).mean()))
        assert row["dynamic_sampling/tries"] >= 1
        if row["dynamic_sampling/tries"] < 4:  # a full batch of informative groups
            assert all(exp.rewards[i].max() > exp.rewards[i].min() for i in _groups(exp))


def check_gspo(rows, seen):
    moved = False
    for level, ratio in seen["ratio"]:
        assert level == "sequence" and ratio.values.dim() == 1  # one ratio per sequence
        per_token = ratio.per_token.detach()  # every token of a row carries its sequence's ratio
        torch.testing.assert_close(per_token, ratio.values[:, None].expand_as(per_token))
        moved |= bool((ratio.values - 1).abs().max() > 1e-6)
    assert moved  # the second mini-batch of a step sees a policy that has moved


CHECKS = {"grpo": check_grpo, "dr_grpo": check_dr_grpo, "rloo": check_rloo, "ppo": check_ppo,
          "reinforce_pp": check_reinforce_pp, "reinforce_pp_baseline": check_reinforce_pp_baseline,
          "dapo": check_dapo, "gspo": check_gspo}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_trains(preset, tiny_dir, tmp_path, captured):
    assert run_cli("rl", "--preset", preset, *rl_flags(tiny_dir, tmp_path, 2)) == 0
    rows = read_metrics(tmp_path / "rl")
    assert [r["step"] for r in rows] == [1, 2]
    last = rows[-1]
    for key in ("reward/mean", "reward/std", "reward/sevens", "entropy", "response_length/mean",
                "response_length/max", "response_length/truncated_frac", "clip_frac", "advantages/mean",
                "timing/generate", "timing/score", "timing/logprobs", "timing/train", "timing/sync", "loss"):
        assert key in last, key
        assert last[key] is None or math.isfinite(last[key]), key
    # what distinguishes the preset shows in the tensors it made and in the metrics
    CHECKS[preset](rows, captured)
    if preset != "gspo":
        assert {level for level, _ in captured["ratio"]} == {"token"}
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
