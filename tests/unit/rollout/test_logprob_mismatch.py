"""The trainer-vs-rollout log-prob mismatch metric, against numbers worked out by hand."""

import math

import torch

from alignkit.trainers.rl.metrics import logprob_mismatch


def test_mean_abs_and_max_ratio_over_response_tokens():
    trainer = torch.tensor([[-1.0, -2.0, -0.5, -9.0], [-1.0, -1.0, 0.0, 0.0]])
    rollout = torch.tensor([[-1.5, -2.0, -0.25, 0.0], [-0.5, -1.2, 0.0, 0.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])  # the -9 is a prompt token: ignored
    m = logprob_mismatch(trainer, rollout, mask)
    # response diffs: 0, -0.25 | -0.5, +0.2  -> mean |d| = 0.95 / 4; largest pi_trainer / pi_rollout = e^0.2
    assert math.isclose(m["logprob_mismatch/mean_abs"], 0.2375, rel_tol=1e-6)
    assert math.isclose(m["logprob_mismatch/ratio_max"], math.exp(0.2), rel_tol=1e-6)


def test_identical_log_probs_and_an_empty_mask():
    lp = torch.tensor([[-1.0, -2.0]])
    assert logprob_mismatch(lp, lp, torch.ones(1, 2)) == {"logprob_mismatch/mean_abs": 0.0, "logprob_mismatch/ratio_max": 1.0}
    assert logprob_mismatch(lp, lp, torch.zeros(1, 2))["logprob_mismatch/ratio_max"] == 1.0


def test_a_far_off_token_is_a_huge_ratio_not_an_overflow():
    m = logprob_mismatch(torch.tensor([[0.0]]), torch.tensor([[-200.0]]), torch.ones(1, 1))
    assert m["logprob_mismatch/ratio_max"] > 1e80
