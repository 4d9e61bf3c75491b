"""Clipped PPO value loss (alignkit.algos.losses.value)."""

import pytest
import torch

from alignkit.algos.aggregate import aggregate
from alignkit.algos.losses.value import value_loss
from alignkit.algos.objective import ValueObjective, value_objective

F64 = torch.float64
VALUES = [1.2, 3.0, 0.0, 5.0]
OLD = torch.tensor([[0.8, 2.0, 0.0, 0.0]], dtype=F64)
RETURNS = torch.tensor([[2.0, 1.0, -1.0, 0.0]], dtype=F64)
MASK = torch.tensor([[1, 1, 1, 0]])


def test_clipped_value_loss_hand_example():
    """PPO arXiv:1707.06347 eq. 9 + Baselines ppo2 clipping (Engstrom et al. arXiv:2005.12729 Sec. 3).

    clip = 0.2:
      v=1.2 old=0.8 -> v_c = 1.0; (1.2-2)^2 = 0.64 < (1.0-2)^2 = 1.0 -> 0.5*1.0 = 0.5 (clipped)
      v=3.0 old=2.0 -> v_c = 2.2; (3-1)^2 = 4 > (2.2-1)^2 = 1.44  -> 0.5*4 = 2.0 (gradient flows)
      v=0.0 old=0.0 -> v_c = 0;   (0+1)^2 = 1                     -> 0.5
    token_mean = 3.0 / 3 = 1.0; gradient (v - R) / 3 where unclipped.
    """
    values = torch.tensor([VALUES], dtype=F64, requires_grad=True)
    terms, m = value_objective(ValueObjective(clip=0.2, agg="token_mean"), values, OLD, RETURNS, MASK)
    loss = terms.mean()
    assert loss.item() == pytest.approx(1.0)
    assert m["value_loss"].value == m["loss"].value == pytest.approx(1.0)
    assert m["value_clip_frac"].value == pytest.approx(1 / 3)
    assert m["value_mean"].value == pytest.approx((1.2 + 3.0 + 0.0) / 3)
    loss.backward()
    torch.testing.assert_close(values.grad, torch.tensor([[0.0, 2 / 3, 1 / 3, 0.0]], dtype=F64))


def test_unclipped_value_loss():
    """clip=None: 0.5 * (v - R)^2 = 0.5 * (0.64 + 4 + 1) / 3."""
    values = torch.tensor([VALUES], dtype=F64)
    loss_tok, m = value_loss(values, OLD, RETURNS, MASK, clip=None)
    assert aggregate(loss_tok, MASK).item() == pytest.approx(0.5 * 5.64 / 3)
    assert m["value_clip_frac"].value == 0.0
