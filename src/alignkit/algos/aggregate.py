"""Reduce a masked per-token loss ``(batch, seq)`` to a scalar: a sum and the count it is divided by.

The mode decides what one token weighs: ``token_mean`` weighs every token equally (long answers
count more), ``seq_mean_token_mean`` weighs every sequence equally (GRPO), ``seq_mean_token_sum_norm``
divides every sequence by the same constant (Dr.GRPO, no length bias). Pure torch.

A loss is ``total / count`` where both add over micro-batches and workers (:class:`LossSum`): the
loss of an optimizer step is the sum of its parts' totals divided by the step's count, which is
what makes gradient accumulation and data parallelism exact. :func:`loss_count` gives that count
for a whole step; it is the one definition of a step's denominator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from alignkit.algos.metric import Metric

AggMode = Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"]
AGG_MODES: tuple[str, ...] = get_args(AggMode)


@dataclass(frozen=True)
class LossSum:
    """A loss as ``total / count``. ``total``: scalar, carrying autograd; ``count``: what it is divided
    by (masked tokens for ``token_mean``, sequences with a masked token for the two sequence modes).
    Both add over the parts of a batch."""

    total: Tensor
    count: Tensor

    def mean(self) -> Tensor:
        """The loss of this part alone (0 when it counts nothing)."""
        return self.total / self.count.clamp(min=1)

    def metric(self) -> Metric:
        """The loss as a mean weighted by its count: parts combine into the whole step's loss."""
        return Metric("mean", self.total.detach(), self.count)


def _check(loss_tok: Tensor, mask: Tensor) -> Tensor:
    if loss_tok.shape != mask.shape or loss_tok.dim() != 2:
        raise ValueError(
            f"loss_tok and mask must both be (batch, seq); got {tuple(loss_tok.shape)}, {tuple(mask.shape)}"
        )
    # `where`, not a product: a nan/inf on a padded position (say an overflowed ratio) must not leak in.
    return torch.where(mask.bool(), loss_tok, torch.zeros_like(loss_tok))


def _count(mask: Tensor, mode: str) -> Tensor:
    tokens_per_seq = mask.float().sum(-1)
    if mode == "token_mean":
        return tokens_per_seq.sum()
    if mode in ("seq_mean_token_mean", "seq_mean_token_sum_norm"):
        return (tokens_per_seq > 0).sum().float()
    raise ValueError(f"unknown aggregation mode {mode!r}; choose one of {AGG_MODES}")


def loss_count(mask: Tensor, mode: str) -> float:
    """What a step's loss over ``mask (batch, seq)`` is divided by in ``mode``: the masked tokens, or the
    sequences with at least one masked token. Computed on the whole step (all its micro-batches and
    workers) and passed to every part, whose ``LossSum.total`` is divided by it."""
    return float(_count(mask, mode))


def loss_sum(loss_tok: Tensor, mask: Tensor, mode: str = "token_mean", max_len: float | None = None) -> LossSum:
    """A per-token loss as a sum and its count.

    Shapes: ``loss_tok`` and ``mask`` are ``(batch, seq)``; ``mask`` is bool or float, truthy on the
    tokens that count. Positions where ``mask`` is false contribute nothing, whatever their value.

    * ``token_mean`` (DAPO, arXiv:2503.14476 eq. 12, token-level loss): total = the sum over all
      masked tokens; count = the masked tokens.
    * ``seq_mean_token_mean`` (GRPO, arXiv:2402.03300 eq. 3: 1/|o_i| inside, 1/G outside): total = the
      sum over sequences of each sequence's mean over its masked tokens; count = the sequences that
      have a masked token.
    * ``seq_mean_token_sum_norm`` (Dr.GRPO, arXiv:2503.20783 Fig. 1, a constant in place of 1/|o_i|):
      total = the sum over sequences of each sequence's token sum divided by ``max_len`` (required:
      the maximum generation length); count = the sequences that have a masked token.
    """
    masked = _check(loss_tok, mask)
    count = _count(mask, mode).to(masked.dtype)
    if mode == "token_mean":
        return LossSum(masked.sum(), count)
    if mode == "seq_mean_token_mean":
        tokens_per_seq = mask.to(masked.dtype).sum(-1)
        return LossSum((masked.sum(-1) / tokens_per_seq.clamp(min=1.0)).sum(), count)
    if max_len is None:
        raise ValueError("seq_mean_token_sum_norm needs max_len (the maximum generation length)")
    return LossSum((masked.sum(-1) / max_len).sum(), count)


def aggregate(loss_tok: Tensor, mask: Tensor, mode: str = "token_mean", max_len: float | None = None) -> Tensor:
    """The scalar loss of ``loss_tok`` over ``mask`` alone (see :func:`loss_sum`); 0 for an all-false
    mask in every mode."""
    return loss_sum(loss_tok, mask, mode, max_len).mean()


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x (batch, seq)`` over the masked tokens (0 if none); for metrics."""
    return aggregate(x, mask, "token_mean")


def token_mean(x: Tensor, mask: Tensor) -> Metric:
    """A metric: the mean of ``x (batch, seq)`` over the masked tokens, weighted by their number."""
    m = mask.bool()
    return Metric("mean", torch.where(m, x, 0.0).sum().detach(), m.sum())
