"""Clipped policy-gradient surrogates for online RL: PPO (with DAPO clip-higher and dual-clip) and
GSPO, as one clipped surrogate over an importance ratio taken per token (PPO) or per sequence (GSPO).

A registry entry (:data:`POLICY_LOSSES`) names a loss by its ratio level. The surrogate returns a
PER-TOKEN loss ``(batch, seq)``; the objective (algos/objective.py) adds the KL and entropy terms and
the importance weights and aggregates once. Metrics carry their reduction (algos/metric.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from alignkit.algos.aggregate import token_mean
from alignkit.algos.kl import LOG_RATIO_LIMIT, kl_estimate
from alignkit.algos.metric import Metric, maximum, mean, minimum

# Log-ratios are clamped to kl.LOG_RATIO_LIMIT before exp so that it stays finite (as verl does). Such tokens lie
# far outside any clip range; the clamp only cuts the gradient of A<0 tokens with ratio > e^20,
# which an unclipped PPO would push with a huge step (dual-clip bounds those properly).


def tis_weight(old_logp: Tensor, behaviour_logp: Tensor, cap: float) -> Tensor:
    """Truncated importance-sampling weight ``min(pi_old / pi_behaviour, cap)``, detached.

    Corrects for tokens sampled by a behaviour policy (the inference engine, or a stale one) that
    differs from ``pi_old`` as the trainer computes it (Yao et al. 2025, "Your Efficient RL Framework
    Secretly Brings You Off-Policy RL Training", truncated importance sampling). Shapes ``(batch,
    seq)``; nothing is masked here (the loss's mask applies). Multiply the per-token loss by it
    via ``is_weight``.
    """
    if cap <= 0:
        raise ValueError("tis cap must be > 0")
    # Clamping the log first gives the same min(., cap) without ever forming inf.
    log_w = (old_logp - behaviour_logp).clamp(max=math.log(cap))
    return torch.exp(log_w).detach()



@dataclass(frozen=True)
class Ratio:
    """An importance ratio ``pi / pi_old``. ``per_token (batch, seq)`` enters the surrogate; ``values``
    and ``counted`` (same shape, bool) are the ratios the metrics summarise: one per token, or one per
    sequence for a sequence-level ratio."""

    per_token: Tensor
    values: Tensor
    counted: Tensor


def token_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Ratio:
    """PPO's per-token ratio ``rho_t = exp(logp_t - old_logp_t)`` (Schulman et al. 2017,
    arXiv:1707.06347, eq. 6), the log clamped to +-20 so that it stays finite."""
    ratio = torch.exp((logp - old_logp).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT))
    return Ratio(ratio, ratio.detach(), mask.bool())


def sequence_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Ratio:
    """GSPO's sequence-level, length-normalised ratio (Zheng et al. 2025, arXiv:2507.18071, eq. 5-7):
    ``s_i = exp(mean_t (logp - old_logp))`` over the masked tokens of sequence ``i``.

    Written in the GSPO-token form, ``s_it = sg[s_i] * exp(logp_t - sg[logp_t])``: its value is
    ``s_i`` on every token and, with ``seq_mean_token_mean`` and one advantage per sequence, the
    gradient of the clipped surrogate (their eq. 18) is exactly GSPO's (eq. 11; ``grad s_i = s_i *
    mean_t grad logp_t``), while token-level advantages stay possible."""
    m = mask.bool()
    tokens = m.sum(-1)
    seq_log_ratio = torch.where(m, logp.detach() - old_logp, 0.0).sum(-1) / tokens.clamp(min=1)
    # sg[s_i] carries no gradient, so clamping it never blocks one: that flows via logp - sg(logp).
    seq_part = seq_log_ratio.clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    return Ratio(torch.exp(seq_part[:, None] + logp - logp.detach()), torch.exp(seq_part), tokens > 0)


@dataclass(frozen=True)
class PolicyLoss:
    """A policy-loss registry entry: the level its importance ratio is taken at."""

    ratio: Literal["token", "sequence"]


RATIOS: dict[str, Callable[[Tensor, Tensor, Tensor], Ratio]] = {"token": token_ratio, "sequence": sequence_ratio}
POLICY_LOSSES: dict[str, PolicyLoss] = {
    "ppo": PolicyLoss(ratio="token"),  # PPO, DAPO's clip-higher, dual-clip
    "gspo": PolicyLoss(ratio="sequence"),
}
PolicyLossName = Literal[tuple(POLICY_LOSSES)]  # type: ignore[valid-type]  # the registry's keys


def policy_loss(
    name: str,
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
) -> tuple[Tensor, dict[str, Metric]]:
    """The clipped surrogate of the policy loss ``name``, per token and negated for minimisation.

    With the ratio ``r`` at the entry's level (:data:`RATIOS`) and the decoupled range of DAPO's
    clip-higher (arXiv:2503.14476, eq. 10; PPO arXiv:1707.06347 eq. 7 when ``clip_low == clip_high``)::

        l = max(-A * r, -A * clip(r, 1 - clip_low, 1 + clip_high))

    Dual-clip (Ye et al. 2020, arXiv:1912.09729, the dual-clip objective): for ``A < 0`` the loss is
    further capped, ``l = min(l, -dual_clip * A)`` with ``dual_clip > 1``, so a huge ratio on a bad
    token cannot blow up.

    Shapes: ``logp``, ``old_logp``, ``advantages``, ``mask`` are ``(batch, seq)``; so is the returned
    ``l`` (unmasked: the caller aggregates). Metrics: ``clip_frac`` (share of masked tokens where the
    clipped term is selected, so their gradient is zero), ``dual_clip_frac``, ``approx_kl`` (mean k3
    of KL(old || new) over masked tokens), ``ratio_mean``, ``ratio_max``, ``ratio_min`` (over the
    ratio's units: masked tokens, or sequences with a masked token).
    """
    if name not in POLICY_LOSSES:
        raise ValueError(f"unknown policy loss {name!r}; choose one of {sorted(POLICY_LOSSES)}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError("dual_clip must be > 1")
    ratio = RATIOS[POLICY_LOSSES[name].ratio](logp, old_logp, mask)
    unclipped = -advantages * ratio.per_token
    clipped = -advantages * ratio.per_token.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss_tok = torch.maximum(unclipped, clipped)
    is_dual = torch.zeros_like(loss_tok, dtype=torch.bool)
    if dual_clip is not None:
        cap = -dual_clip * advantages
        is_dual = (advantages < 0) & (cap < loss_tok)
        loss_tok = torch.where(is_dual, cap, loss_tok)
    with torch.no_grad():
        dtype = loss_tok.dtype
        metrics = {
            "clip_frac": token_mean((clipped > unclipped).to(dtype), mask),
            "dual_clip_frac": token_mean(is_dual.to(dtype), mask),
            "approx_kl": token_mean(kl_estimate(old_logp, logp, "k3", clamp=LOG_RATIO_LIMIT), mask),
        } | ratio_metrics(ratio)
    return loss_tok, metrics


def ratio_metrics(ratio: Ratio) -> dict[str, Metric]:
    """Mean, max and min of the ratios that count (0 for all three when none does)."""
    n = ratio.counted.sum()
    v = ratio.values
    return {
        "ratio_mean": mean(torch.where(ratio.counted, v, 0.0).sum() / n.clamp(min=1), n),
        "ratio_max": maximum(torch.where(ratio.counted, v, -torch.inf).max(), n),
        "ratio_min": minimum(torch.where(ratio.counted, v, torch.inf).min(), n),
    }
