"""Sequence-level reward shaping and filtering applied before advantage estimation.

All inputs and outputs are ``(batch,)``; groups are given by ``group_ids (batch,)`` (any size,
any order) and handled with ``torch.unique(return_inverse=True)`` + scatter, without loops.
"""

from __future__ import annotations

import torch
from torch import Tensor


def overlong_penalty(lengths: Tensor, max_len: int, cache_len: int, penalty_factor: float = 1.0) -> Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, arXiv:2503.14476, eq. 13), to add to rewards.

    With ``L_max = max_len``, ``L_cache = cache_len``: 0 for ``L <= L_max - L_cache``;
    ``((L_max - L_cache) - L) / L_cache`` (from 0 down to -1) inside the cache window; -1 for
    ``L > L_max``; all times ``penalty_factor``. ``lengths``: ``(batch,)`` response token counts.
    """
    if not 0 < cache_len <= max_len:
        raise ValueError("overlong_penalty needs 0 < cache_len <= max_len")
    # The window is linear and both outer cases are its clamp: one expression covers all three.
    ramp = (max_len - cache_len - lengths.float()) / cache_len
    return penalty_factor * ramp.clamp(min=-1.0, max=0.0)


def clip_rewards(rewards: Tensor, lo: float, hi: float) -> Tensor:
    """Rewards clamped to ``[lo, hi]``, a guard against reward-model outliers. ``(batch,)``."""
    return rewards.clamp(min=lo, max=hi)


def informative_groups(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """``(batch,)`` bool: False for samples whose group's rewards are all equal (a group of one too).

    Such groups have zero group-relative advantage and so no gradient; DAPO's dynamic sampling
    (arXiv:2503.14476, eq. 11, the constraint ``0 < |{correct}| < G``) drops them and samples more.
    Equality is exact: verifiable rewards are discrete.
    """
    unique_ids, inverse = torch.unique(group_ids, return_inverse=True)
    empty = torch.empty(unique_ids.numel(), dtype=rewards.dtype, device=rewards.device)
    high = empty.scatter_reduce(0, inverse, rewards, reduce="amax", include_self=False)
    low = empty.scatter_reduce(0, inverse, rewards, reduce="amin", include_self=False)
    return (high > low)[inverse]
