"""Entropy from logits (alignkit.algos.entropy)."""

import math

import pytest
import torch

from alignkit.algos.entropy import entropy_from_logits


def test_entropy_hand_values():
    """H = -sum p log p: uniform over 4 -> log 4; logits [0, log 3] -> p = [1/4, 3/4]."""
    h = entropy_from_logits(torch.zeros(1, 1, 4))
    assert h.shape == (1, 1)
    assert h.item() == pytest.approx(math.log(4.0))
    two = entropy_from_logits(torch.tensor([[[0.0, math.log(3.0)]]], dtype=torch.float64))
    assert two.item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))


def test_entropy_is_stable_for_large_logits():
    """Shifting by the max keeps float32 exact where logsumexp(1000, 1000) - 1000 would lose digits."""
    logits = torch.tensor([[[1000.0, 1000.0], [1000.0, -1000.0]]])
    h = entropy_from_logits(logits)
    torch.testing.assert_close(h, torch.tensor([[math.log(2.0), 0.0]]))
