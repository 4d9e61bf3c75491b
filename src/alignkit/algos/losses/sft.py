"""Supervised fine-tuning loss: token-level negative log-likelihood on response tokens."""

from __future__ import annotations

import torch


def sft_loss(logprobs: torch.Tensor, mask: torch.Tensor, denom: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative log-likelihood summed over masked tokens and divided by `denom`.

    logprobs, mask: `(batch, seq)`; mask is 1 on response tokens. `denom` is the number of response
    tokens in the whole optimizer step, so that micro-batches of gradient accumulation add up to the
    token mean of the step (every token weighs the same, whatever micro-batch it falls in).
    Metrics are additive across the micro-batches of a step: `nll` sums to the step's token mean.
    """
    nll = -(logprobs * mask).sum() / denom
    return nll, {"nll": nll.detach()}
