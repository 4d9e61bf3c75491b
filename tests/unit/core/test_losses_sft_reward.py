"""SFT and Bradley-Terry losses against numbers worked out by hand."""

import math

import pytest
import torch

from alignkit.algos.losses.reward import bradley_terry_loss
from alignkit.algos.losses.sft import sft_loss


def test_sft_loss_is_token_mean_over_the_step():
    # Two rows; mask picks log-probs -1.0, -2.0 (row 0) and -0.5 (row 1): sum of NLL = 3.5.
    lp = torch.tensor([[-9.0, -1.0, -2.0], [-9.0, -0.5, -7.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    loss, m = sft_loss(lp, mask, denom=3.0)
    assert loss.item() == pytest.approx(3.5 / 3)
    assert m["nll"].item() == pytest.approx(3.5 / 3)


def test_sft_micro_batches_add_up_to_the_full_batch():
    lp = torch.tensor([[-1.0, -2.0], [-3.0, -4.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    full, _ = sft_loss(lp, mask, denom=3.0)
    halves = sft_loss(lp[:1], mask[:1], 3.0)[0] + sft_loss(lp[1:], mask[1:], 3.0)[0]
    assert full.item() == pytest.approx(halves.item()) == pytest.approx(2.0)


def test_bradley_terry_by_hand():
    """Ouyang et al. 2022 eq. 1: loss = -log sigmoid(r_c - r_r)."""
    c, r = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    loss, m = bradley_terry_loss(c, r, denom=2.0)
    # -log sigmoid(1) = log(1 + e^-1) = 0.3132617; -log sigmoid(-1) = log(1 + e) = 1.3132617
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.e)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m["accuracy"].item() == 0.5
    assert m["chosen_score"].item() == pytest.approx(1.0)
    assert m["rejected_score"].item() == pytest.approx(1.0)


def test_bradley_terry_margin_and_logexp_form():
    """Llama 2 eq. 2: -log sigmoid(r_c - r_r - m); the log-exp form log(1 + exp(r_r - r_c + m)) is equal."""
    c, r, m = torch.tensor([3.0]), torch.tensor([1.0]), torch.tensor([0.5])
    sig, _ = bradley_terry_loss(c, r, 1.0, m, "sigmoid")
    lexp, _ = bradley_terry_loss(c, r, 1.0, m, "logexp")
    expected = math.log(1 + math.exp(1.0 - 3.0 + 0.5))  # = 0.2014133
    assert sig.item() == pytest.approx(expected, rel=1e-6)
    assert lexp.item() == pytest.approx(expected, rel=1e-6)


def test_bradley_terry_is_stable_for_large_gaps():
    loss, _ = bradley_terry_loss(torch.tensor([0.0]), torch.tensor([200.0]), 1.0)
    assert loss.item() == pytest.approx(200.0)
