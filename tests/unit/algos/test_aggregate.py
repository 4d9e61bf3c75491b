"""Loss aggregation modes (alignkit.algos.aggregate) on a hand example with ragged masks."""

import math

import pytest
import torch

from alignkit.algos.aggregate import aggregate, masked_mean

NAN = math.nan
# Row 0 has 3 counted tokens, row 1 has 2, row 2 none. Masked-out slots hold junk (even nan).
LOSS = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 6.0, NAN, 100.0], [100.0, 100.0, 100.0, 100.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])


def test_token_mean():
    """DAPO arXiv:2503.14476 eq. 12: sum over every counted token / number of tokens = (1+2+3+4+6)/5."""
    assert aggregate(LOSS, MASK, "token_mean").item() == pytest.approx(16 / 5)
    assert aggregate(LOSS, MASK, "token_mean", denom=8.0).item() == pytest.approx(16 / 8)


def test_seq_mean_token_mean():
    """GRPO arXiv:2402.03300 eq. 3: per-row means 6/3=2 and 10/2=5; the empty row is not a sequence."""
    assert aggregate(LOSS, MASK, "seq_mean_token_mean").item() == pytest.approx((2 + 5) / 2)


def test_seq_mean_token_sum_norm():
    """Dr.GRPO arXiv:2503.20783: row sums 6 and 10 divided by the constant 4, then mean = (1.5+2.5)/2."""
    assert aggregate(LOSS, MASK, "seq_mean_token_sum_norm", denom=4.0).item() == pytest.approx(2.0)


def test_bool_mask_and_masked_mean_match():
    assert aggregate(LOSS, MASK.bool()).item() == pytest.approx(16 / 5)
    assert masked_mean(LOSS, MASK).item() == pytest.approx(16 / 5)


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_empty_mask_gives_zero(mode):
    out = aggregate(torch.ones(2, 3), torch.zeros(2, 3), mode, denom=3.0 if "norm" in mode else None)
    assert out.item() == 0.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(LOSS, MASK, "sum")
    with pytest.raises(ValueError, match="denom"):
        aggregate(LOSS, MASK, "seq_mean_token_sum_norm")
    with pytest.raises(ValueError, match="batch, seq"):
        aggregate(LOSS, MASK[:, :2])


@pytest.mark.parametrize(("mode", "count"), [("token_mean", "tokens"), ("seq_mean_token_mean", "seqs")])
def test_global_denom_gives_exact_gradient_accumulation(mode, count):
    """Two half-batches, each divided by the full step's count and summed, give the full-batch gradient."""
    gen = torch.Generator().manual_seed(0)
    weights = torch.randn(6, 9, generator=gen, dtype=torch.float64)
    # Very different token counts per half: a local mean would weigh them wrongly.
    mask = torch.zeros(6, 9)
    for row, length in enumerate([9, 8, 7, 1, 2, 1]):
        mask[row, :length] = 1
    full_count = mask.sum().item() if count == "tokens" else 6.0

    p_full = torch.ones(6, 9, dtype=torch.float64, requires_grad=True)
    aggregate(weights * p_full**2, mask, mode).backward()

    p_acc = torch.ones(6, 9, dtype=torch.float64, requires_grad=True)
    for rows in (slice(0, 3), slice(3, 6)):
        aggregate(weights[rows] * p_acc[rows] ** 2, mask[rows], mode, denom=full_count).backward()
    torch.testing.assert_close(p_acc.grad, p_full.grad)

    p_local = torch.ones(6, 9, dtype=torch.float64, requires_grad=True)
    for rows in (slice(0, 3), slice(3, 6)):
        (aggregate(weights[rows] * p_local[rows] ** 2, mask[rows], mode) / 2).backward()
    if mode == "token_mean":  # local token counts (24 vs 4) differ, so the naive average is wrong
        assert not torch.allclose(p_local.grad, p_full.grad)
