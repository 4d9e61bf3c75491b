"""Entropy of the policy's next-token distribution, from logits."""

from __future__ import annotations

import torch
from torch import Tensor


def entropy_from_logits(logits: Tensor) -> Tensor:
    """``H = logsumexp(z) - sum_v softmax(z)_v * z_v`` per position, with ``z`` the max-shifted logits.

    Shapes: ``logits (batch, seq, vocab)`` -> ``(batch, seq)``; nothing is masked or averaged. The
    logsumexp form never takes ``log(0)``, so it is stable for peaked distributions, and the shift
    (H does not change under it) keeps the two terms small, so their difference keeps its digits.
    Logits must be finite (a ``-inf`` logit would give ``0 * -inf``). Computed in their dtype.
    """
    z = logits - logits.amax(dim=-1, keepdim=True)
    return torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(-1)
