"""The objectives of an online-RL update, in one place: per token, the policy's surrogate (times the
importance weights) plus the KL term to the reference (when the KL is placed in the loss, as GRPO
does) minus the entropy bonus, aggregated ONCE into a sum and the count it is divided by; and the
critic's clipped value loss the same way.

Each returns ``(LossSum, metrics)``: the caller divides ``LossSum.total`` by the whole step's count
(``aggregate.loss_count``), so micro-batches and workers add up to the step's loss. The metrics carry
their reductions; ``loss`` is the objective optimised and its parts are logged beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from alignkit.algos.aggregate import AggMode, LossSum, loss_sum, token_mean
from alignkit.algos.kl import kl_penalty
from alignkit.algos.losses.policy import policy_loss
from alignkit.algos.losses.value import value_loss
from alignkit.algos.metric import Metric


@dataclass(frozen=True)
class PolicyObjective:
    """Hyper-parameters of the policy update."""

    loss: str = "ppo"  # key of losses.policy.POLICY_LOSSES
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = None
    agg: AggMode = "seq_mean_token_mean"
    max_len: int = 1  # the constant of seq_mean_token_sum_norm: the longest response
    kl_coef: float = 0.0  # in the loss; 0 when the KL goes into the reward instead
    kl_estimator: str = "k3"
    kl_clamp: float | None = None  # bound of each token's KL estimate (kl.kl_penalty)
    entropy_coef: float = 0.0


@dataclass(frozen=True)
class ValueObjective:
    """Hyper-parameters of the critic update."""

    clip: float | None = 0.2
    agg: AggMode = "token_mean"
    max_len: int = 1


def policy_objective(
    obj: PolicyObjective,
    logp: Tensor,
    old_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    ref_logp: Tensor | None = None,
    entropy: Tensor | None = None,
    is_weight: Tensor | None = None,
) -> tuple[LossSum, dict[str, Metric]]:
    """The policy objective of one micro-batch; all tensors ``(batch, seq)``, ``mask`` on response tokens.

    Per token ``l = w * surrogate + kl_coef * KL - entropy_coef * H``, with ``w`` the truncated
    importance weight (``is_weight``, 1 when None), reduced by ``obj.agg``. ``old_logp`` None means
    on-policy (a single update per rollout): the ratio is taken against the detached current
    log-probs, which is 1 in value with the policy-gradient gradient, and saves the forward pass that
    would compute the same numbers. Metrics: the surrogate's, ``loss`` and its parts ``pg_loss``,
    ``kl_loss`` (KL in the loss) and ``entropy_loss`` (entropy bonus on), ``kl`` (mean over masked
    tokens) when a reference is given, ``entropy`` when given.
    """
    old = logp.detach() if old_logp is None else old_logp
    pg_tok, metrics = policy_loss(obj.loss, logp, old, advantages, mask, obj.clip_low, obj.clip_high, obj.dual_clip)
    parts = {"pg_loss": pg_tok if is_weight is None else pg_tok * is_weight}
    if ref_logp is not None:
        kl_tok = kl_penalty(logp, ref_logp, obj.kl_estimator, obj.kl_clamp)
        metrics["kl"] = token_mean(kl_tok.detach(), mask)
        if obj.kl_coef:
            parts["kl_loss"] = obj.kl_coef * kl_tok
    if entropy is not None:
        metrics["entropy"] = token_mean(entropy.detach(), mask)
        if obj.entropy_coef:
            parts["entropy_loss"] = -obj.entropy_coef * entropy
    terms = loss_sum(sum(parts.values()), mask, obj.agg, obj.max_len)
    with torch.no_grad():
        metrics |= {k: loss_sum(v, mask, obj.agg, obj.max_len).metric() for k, v in parts.items()}
    return terms, metrics | {"loss": terms.metric()}


def value_objective(
    obj: ValueObjective, values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor
) -> tuple[LossSum, dict[str, Metric]]:
    """The critic's clipped value loss of one micro-batch reduced by ``obj.agg``; ``(batch, seq)``
    tensors. Metrics: ``loss`` (= ``value_loss``), ``value_clip_frac``, ``value_mean``."""
    loss_tok, metrics = value_loss(values, old_values, returns, mask, obj.clip)
    terms = loss_sum(loss_tok, mask, obj.agg, obj.max_len)
    return terms, metrics | {"value_loss": terms.metric(), "loss": terms.metric()}
