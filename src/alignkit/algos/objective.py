"""The online-RL policy objective of one micro-batch: a policy loss from the registry, plus the KL
term to the reference (when the KL is placed in the loss, as GRPO does) and the entropy bonus."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from alignkit.algos.aggregate import aggregate, masked_mean
from alignkit.algos.kl import kl_estimate
from alignkit.algos.losses.policy import gspo_policy_loss, ppo_policy_loss

POLICY_LOSSES: dict[str, Callable[..., tuple[Tensor, dict[str, Tensor]]]] = {
    "ppo": ppo_policy_loss,
    "gspo": gspo_policy_loss,
}


@dataclass(frozen=True)
class PolicyObjective:
    """Hyper-parameters of the policy update."""

    loss: str = "ppo"
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = None
    agg: str = "seq_mean_token_mean"
    kl_coef: float = 0.0  # in the loss; 0 when the KL goes into the reward instead
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0


def policy_objective(
    obj: PolicyObjective,
    logp: Tensor,
    old_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    denom: float,
    ref_logp: Tensor | None = None,
    entropy: Tensor | None = None,
    is_weight: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss of one micro-batch; all tensors `(batch, seq)`, `mask` on response tokens.

    `old_logp` None means on-policy (a single update per rollout): the ratio is taken against the
    detached current log-probs, which is 1 in value with the policy-gradient gradient, and saves the
    forward pass that would compute the same numbers. `denom` is the step's denominator for `obj.agg`
    (see `aggregate.micro_denom`). Metrics: the policy loss's, plus `kl` (mean over masked tokens)
    when a reference is given.
    """
    if obj.loss not in POLICY_LOSSES:
        raise ValueError(f"unknown policy loss {obj.loss!r}; choose one of {sorted(POLICY_LOSSES)}")
    old = logp.detach() if old_logp is None else old_logp
    kwargs = {"dual_clip": obj.dual_clip} if obj.loss == "ppo" else {}
    loss, metrics = POLICY_LOSSES[obj.loss](
        logp, old, advantages, mask, clip_low=obj.clip_low, clip_high=obj.clip_high, agg=obj.agg, denom=denom,
        is_weight=is_weight, entropy=entropy, entropy_coef=obj.entropy_coef, **kwargs,
    )
    if ref_logp is not None:
        kl_tok = kl_estimate(logp, ref_logp, obj.kl_estimator)
        if obj.kl_coef:
            loss = loss + obj.kl_coef * aggregate(kl_tok, mask, obj.agg, denom)
        with torch.no_grad():
            metrics["kl"] = masked_mean(kl_tok.detach(), mask)
    return loss, metrics
