"""Clipped value (critic) loss for PPO."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.algos.aggregate import token_mean
from alignkit.algos.metric import Metric


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float | None = 0.2
) -> tuple[Tensor, dict[str, Metric]]:
    """``0.5 * max((V - R)^2, (clip(V, V_old - clip, V_old + clip) - R)^2)`` per token.

    The squared error is PPO's ``L^VF`` (Schulman et al. 2017, arXiv:1707.06347, eq. 9); the
    pessimistic clipped form is OpenAI Baselines' ppo2, analysed by Engstrom et al. 2020
    (arXiv:2005.12729, Sec. 3, "value function clipping"). ``clip=None`` gives ``0.5 * (V - R)^2``.

    Shapes: ``values`` (the critic now), ``old_values`` (at rollout), ``returns`` (targets, e.g.
    from GAE) and ``mask`` are ``(batch, seq)``; so is the returned loss (unmasked: the caller
    aggregates). Metrics (over masked tokens): ``value_clip_frac`` (share where the clipped term is
    the larger, so the gradient is zero), ``value_mean``.
    """
    unclipped = (values - returns).square()
    if clip is None:
        loss_tok = 0.5 * unclipped
        is_clipped = torch.zeros_like(unclipped, dtype=torch.bool)
    else:
        v_clipped = old_values + (values - old_values).clamp(-clip, clip)
        clipped = (v_clipped - returns).square()
        loss_tok = 0.5 * torch.maximum(unclipped, clipped)
        is_clipped = clipped > unclipped
    with torch.no_grad():
        metrics = {
            "value_clip_frac": token_mean(is_clipped.to(values.dtype), mask),
            "value_mean": token_mean(values.detach(), mask),
        }
    return loss_tok, metrics
