"""Loss aggregation modes (alignkit.algos.aggregate) on a hand example with ragged masks: a loss is a sum
and the count it is divided by, and one step's count makes micro-batches add up to the whole batch."""

import math

import pytest
import torch

from alignkit.algos.aggregate import aggregate, loss_count, loss_sum, masked_mean

NAN = math.nan
# Row 0 has 3 counted tokens, row 1 has 2, row 2 none. Masked-out slots hold junk (even nan).
LOSS = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 6.0, NAN, 100.0], [100.0, 100.0, 100.0, 100.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])


def test_token_mean():
    """DAPO arXiv:2503.14476 eq. 12: sum over every counted token / number of tokens = (1+2+3+4+6)/5."""
    assert aggregate(LOSS, MASK, "token_mean").item() == pytest.approx(16 / 5)
    terms = loss_sum(LOSS, MASK, "token_mean")
    assert (terms.total.item(), terms.count.item()) == (16.0, 5.0) and loss_count(MASK, "token_mean") == 5.0
    assert (terms.total / 8.0).item() == pytest.approx(16 / 8)  # divided by a whole step's 8 tokens


def test_seq_mean_token_mean():
    """GRPO arXiv:2402.03300 eq. 3: per-row means 6/3=2 and 10/2=5; the empty row is not a sequence."""
    assert aggregate(LOSS, MASK, "seq_mean_token_mean").item() == pytest.approx((2 + 5) / 2)
    terms = loss_sum(LOSS, MASK, "seq_mean_token_mean")
    assert (terms.total.item(), terms.count.item()) == (7.0, 2.0) and loss_count(MASK, "seq_mean_token_mean") == 2.0


def test_seq_mean_token_sum_norm():
    """Dr.GRPO arXiv:2503.20783: row sums 6 and 10 divided by the constant 4, then mean = (1.5+2.5)/2."""
    assert aggregate(LOSS, MASK, "seq_mean_token_sum_norm", max_len=4.0).item() == pytest.approx(2.0)
    terms = loss_sum(LOSS, MASK, "seq_mean_token_sum_norm", max_len=4.0)
    assert (terms.total.item(), terms.count.item()) == (4.0, 2.0)


def test_bool_mask_and_masked_mean_match():
    assert aggregate(LOSS, MASK.bool()).item() == pytest.approx(16 / 5)
    assert masked_mean(LOSS, MASK).item() == pytest.approx(16 / 5)


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_empty_mask_gives_zero(mode):
    out = aggregate(torch.ones(2, 3), torch.zeros(2, 3), mode, max_len=3.0)
    assert out.item() == 0.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(LOSS, MASK, "sum")
    with pytest.raises(ValueError, match="max_len"):
        aggregate(LOSS, MASK, "seq_mean_token_sum_norm")
    with pytest.raises(ValueError, match="batch, seq"):
        aggregate(LOSS, MASK[:, :2])


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_micro_batches_add_up_to_one_big_batch(mode):
    """Each micro-batch's sum divided by the WHOLE batch's count, summed: the big batch's loss and
    gradient, in every mode (also with an empty row and ragged micro-batches)."""
    gen = torch.Generator().manual_seed(0)
    weights = torch.randn(7, 9, generator=gen, dtype=torch.float64)
    # Very different token counts per micro-batch: a local mean would weigh them wrongly.
    mask = torch.zeros(7, 9)
    for row, length in enumerate([9, 8, 7, 1, 2, 1, 0]):
        mask[row, :length] = 1
    step_count = loss_count(mask, mode)
    assert step_count == {"token_mean": 28.0}.get(mode, 6.0)  # the empty row is not a sequence

    p_full = torch.ones(7, 9, dtype=torch.float64, requires_grad=True)
    full = aggregate(weights * p_full**2, mask, mode, max_len=9.0)
    full.backward()

    p_acc = torch.ones(7, 9, dtype=torch.float64, requires_grad=True)
    acc = 0.0
    for rows in (slice(0, 1), slice(1, 4), slice(4, 7)):
        part = loss_sum(weights[rows] * p_acc[rows] ** 2, mask[rows], mode, max_len=9.0).total / step_count
        part.backward()
        acc += part.item()
    assert acc == pytest.approx(full.item(), rel=1e-12)
    torch.testing.assert_close(p_acc.grad, p_full.grad)

    p_local = torch.ones(7, 9, dtype=torch.float64, requires_grad=True)
    for rows in (slice(0, 1), slice(1, 4), slice(4, 7)):
        (aggregate(weights[rows] * p_local[rows] ** 2, mask[rows], mode, max_len=9.0) / 3).backward()
    assert not torch.allclose(p_local.grad, p_full.grad)  # the naive mean of local means is wrong
