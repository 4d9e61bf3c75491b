"""Clipped policy-gradient losses for online RL: PPO (with DAPO clip-higher and dual-clip) and GSPO.

Token tensors are ``(batch, seq)`` with ``mask`` true on the response tokens that count; the
loss is reduced by :func:`alignkit.algos.aggregate.aggregate` (``agg``, ``denom``). Metrics are
detached scalars averaged over the masked tokens of this call.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from alignkit.algos.aggregate import aggregate, masked_mean
from alignkit.algos.kl import kl_estimate

# Log-ratios are clamped to this before exp so that it stays finite (as verl does). Such tokens lie
# far outside any clip range; the clamp only cuts the gradient of A<0 tokens with ratio > e^20,
# which an unclipped PPO would push with a huge step (dual-clip bounds those properly).
_MAX_LOG_RATIO = 20.0


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


def _entropy_bonus(
    loss: Tensor,
    metrics: dict[str, Tensor],
    entropy: Tensor | None,
    entropy_coef: float,
    mask: Tensor,
    agg: str,
    denom: float | None,
) -> Tensor:
    """``loss - entropy_coef * aggregate(entropy)``, recording the entropy metric when given."""
    if entropy is None:
        return loss
    metrics["entropy"] = masked_mean(entropy.detach(), mask)
    return loss - entropy_coef * aggregate(entropy, mask, agg, denom)


def ppo_policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    agg: str = "token_mean",
    denom: float | None = None,
    is_weight: Tensor | None = None,
    entropy: Tensor | None = None,
    entropy_coef: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate, negated for minimisation.

    Per token, with ``rho = exp(logp - old_logp)`` (Schulman et al. 2017, arXiv:1707.06347, eq. 7)
    and the decoupled range of DAPO's clip-higher (arXiv:2503.14476, eq. 10)::

        l = max(-A * rho, -A * clip(rho, 1 - clip_low, 1 + clip_high))

    Dual-clip (Ye et al. 2020, arXiv:1912.09729, the dual-clip objective): for ``A < 0`` the loss
    is further capped, ``l = min(l, -dual_clip * A)`` with ``dual_clip > 1``, so a huge ratio on a
    bad token cannot blow up. ``is_weight`` (see :func:`tis_weight`) multiplies ``l``. The optional
    entropy bonus subtracts ``entropy_coef * aggregate(entropy, mask, agg, denom)``.

    Shapes: ``logp``, ``old_logp``, ``advantages``, ``mask``, ``is_weight``, ``entropy`` are all
    ``(batch, seq)``. Reduced with ``aggregate(l, mask, agg, denom)``.
    Metrics (over masked tokens): ``clip_frac`` (share of tokens where the clipped term is selected,
    so their gradient is zero), ``dual_clip_frac``, ``approx_kl`` (mean k3 of KL(old || new)),
    ``ratio_mean``, ``ratio_max``, ``pg_loss`` (before the entropy bonus), ``entropy`` if given.
    """
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError("dual_clip must be > 1")
    log_ratio = (logp - old_logp).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss_tok = torch.maximum(unclipped, clipped)
    is_clipped = clipped > unclipped
    is_dual = torch.zeros_like(is_clipped)
    if dual_clip is not None:
        cap = -dual_clip * advantages
        is_dual = (advantages < 0) & (cap < loss_tok)
        loss_tok = torch.where(is_dual, cap, loss_tok)
    if is_weight is not None:
        loss_tok = loss_tok * is_weight
    loss = aggregate(loss_tok, mask, agg, denom)
    with torch.no_grad():
        m = mask.bool()
        metrics = {
            "pg_loss": loss.detach(),
            "clip_frac": masked_mean(is_clipped.to(ratio.dtype), mask),
            "dual_clip_frac": masked_mean(is_dual.to(ratio.dtype), mask),
            "approx_kl": masked_mean(kl_estimate(old_logp, logp, "k3", clamp=_MAX_LOG_RATIO), mask),
            "ratio_mean": masked_mean(ratio, mask),
            # ratio > 0, so the 0 put on unmasked positions never wins unless nothing is masked.
            "ratio_max": torch.where(m, ratio, 0.0).max(),
        }
    return _entropy_bonus(loss, metrics, entropy, entropy_coef, mask, agg, denom), metrics


def gspo_policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
    agg: str = "seq_mean_token_mean",
    denom: float | None = None,
    is_weight: Tensor | None = None,
    entropy: Tensor | None = None,
    entropy_coef: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO: the PPO surrogate on a sequence-level, length-normalised ratio, negated.

    Zheng et al. 2025, arXiv:2507.18071, eq. 5-7: ``s_i = exp(mean_t (logp - old_logp))`` over the
    masked tokens of sequence ``i``, clipped to ``[1 - clip_low, 1 + clip_high]`` (paper: 3e-4, 4e-4).
    Written in the GSPO-token form, ``s_it = sg[s_i] * exp(logp_t - sg[logp_t])``: its value is
    ``s_i`` on every token and, with ``seq_mean_token_mean`` and one advantage per sequence, its
    gradient (their eq. 18) is exactly GSPO's (eq. 11; ``grad s_i = s_i * mean_t grad logp_t``),
    while token-level ``advantages`` stay possible. Per token
    ``l = max(-A * s_it, -A * clip(s_it))``, times ``is_weight`` if given.

    Shapes: ``logp``, ``old_logp``, ``advantages``, ``mask`` (and ``is_weight``, ``entropy``) are
    ``(batch, seq)``; a sequence-level advantage is broadcast over its tokens by the estimators.
    Metrics: ``clip_frac`` (share of masked tokens, i.e. of sequences weighted by length, that are
    clipped), ``approx_kl`` (token k3 of KL(old || new)), ``ratio_mean`` and ``ratio_max`` of the
    sequence ratio ``s_i`` (over sequences with a masked token), ``pg_loss``, ``entropy`` if given.
    """
    m = mask.bool()
    tokens = m.sum(-1)
    seq_log_ratio = torch.where(m, logp.detach() - old_logp, 0.0).sum(-1) / tokens.clamp(min=1)
    # sg[s_i] carries no gradient, so clamping it never blocks one: that flows via logp - sg(logp).
    seq_part = seq_log_ratio.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    ratio = torch.exp(seq_part[:, None] + logp - logp.detach())
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss_tok = torch.maximum(unclipped, clipped)
    if is_weight is not None:
        loss_tok = loss_tok * is_weight
    loss = aggregate(loss_tok, mask, agg, denom)
    with torch.no_grad():
        seq_ratio = torch.exp(seq_part)
        has_tokens = tokens > 0
        metrics = {
            "pg_loss": loss.detach(),
            "clip_frac": masked_mean((clipped > unclipped).to(logp.dtype), mask),
            "approx_kl": masked_mean(kl_estimate(old_logp, logp, "k3", clamp=_MAX_LOG_RATIO), mask),
            "ratio_mean": (seq_ratio * has_tokens).sum() / has_tokens.sum().clamp(min=1),
            "ratio_max": torch.where(has_tokens, seq_ratio, 0.0).max(),
        }
    return _entropy_bonus(loss, metrics, entropy, entropy_coef, mask, agg, denom), metrics
