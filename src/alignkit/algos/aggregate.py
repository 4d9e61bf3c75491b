"""Reduce a masked per-token loss ``(batch, seq)`` to a scalar.

The mode decides what one token weighs: ``token_mean`` weighs every token equally (long answers
count more), ``seq_mean_token_mean`` weighs every sequence equally (GRPO), ``seq_mean_token_sum_norm``
divides every sequence by the same constant (Dr.GRPO, no length bias). Pure torch.
"""

from __future__ import annotations

import torch
from torch import Tensor

AGG_MODES: tuple[str, ...] = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")


def _check(loss_tok: Tensor, mask: Tensor) -> Tensor:
    if loss_tok.shape != mask.shape or loss_tok.dim() != 2:
        raise ValueError(
            f"loss_tok and mask must both be (batch, seq); got {tuple(loss_tok.shape)}, {tuple(mask.shape)}"
        )
    # `where`, not a product: a nan/inf on a padded position (say an overflowed ratio) must not leak in.
    return torch.where(mask.bool(), loss_tok, torch.zeros_like(loss_tok))


def aggregate(loss_tok: Tensor, mask: Tensor, mode: str = "token_mean", denom: float | None = None) -> Tensor:
    """Scalar loss from a per-token loss.

    Shapes: ``loss_tok`` and ``mask`` are ``(batch, seq)``; ``mask`` is bool or float, truthy on the
    tokens that count. Positions where ``mask`` is false contribute nothing, whatever their value.

    Modes and denominators:

    * ``token_mean`` (DAPO, arXiv:2503.14476 eq. 12, token-level loss): sum over all masked
      tokens divided by ``denom`` if given, else by the number of masked tokens here. Pass the
      masked-token count of the whole optimiser step as ``denom`` and sum the micro-batch losses:
      the gradient is then exactly the one of the full batch.
    * ``seq_mean_token_mean`` (GRPO, arXiv:2402.03300 eq. 3: 1/|o_i| inside, 1/G outside): mean
      over the masked tokens of each sequence, then the mean over sequences that have at least one
      masked token; ``denom``, if given, replaces that sequence count (pass the step's sequence
      count for exact accumulation).
    * ``seq_mean_token_sum_norm`` (Dr.GRPO, arXiv:2503.20783 Fig. 1, a constant in place of
      1/|o_i|): each sequence's token sum divided by ``denom`` (required: the maximum generation
      length), then the mean over sequences with at least one masked token (a local count, so
      equal-sized micro-batches accumulate exactly when the caller divides by their number).

    An all-false mask gives 0 (not nan) in every mode.
    """
    masked = _check(loss_tok, mask)
    m = mask.to(masked.dtype)
    if mode == "token_mean":
        count = m.sum().clamp(min=1.0) if denom is None else denom
        return masked.sum() / count
    tokens_per_seq = m.sum(-1)
    seq_count = (tokens_per_seq > 0).sum().clamp(min=1).to(masked.dtype)
    if mode == "seq_mean_token_mean":
        seq_loss = masked.sum(-1) / tokens_per_seq.clamp(min=1.0)
        return seq_loss.sum() / (seq_count if denom is None else denom)
    if mode == "seq_mean_token_sum_norm":
        if denom is None:
            raise ValueError("seq_mean_token_sum_norm needs denom (the maximum generation length)")
        return (masked.sum(-1) / denom).sum() / seq_count
    raise ValueError(f"unknown aggregation mode {mode!r}; choose one of {AGG_MODES}")


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x (batch, seq)`` over the masked tokens (0 if none); for metrics."""
    return aggregate(x, mask, "token_mean")


def micro_denom(mode: str, step_tokens: float, step_seqs: float, micro_seqs: float, max_len: float) -> float:
    """The `denom` to pass to `aggregate` for one micro-batch so that the micro-batch losses of an
    optimizer step add up to the loss of the whole step (exact gradient accumulation).

    token_mean: the step's masked-token count. seq_mean_token_mean: the step's sequence count.
    seq_mean_token_sum_norm: `aggregate` divides by the micro-batch's own sequence count, so the
    constant is rescaled by step_seqs / micro_seqs.
    """
    if mode == "token_mean":
        return step_tokens
    if mode == "seq_mean_token_mean":
        return step_seqs
    if mode == "seq_mean_token_sum_norm":
        return max_len * step_seqs / max(micro_seqs, 1.0)
    raise ValueError(f"unknown aggregation {mode!r}; choose one of {AGG_MODES}")
