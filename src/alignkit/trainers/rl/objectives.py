"""An RL config's objectives of one update: the one place that turns `--algo.*` into the hyper-parameters
the policy and critic workers optimise (algos/objective.py)."""

from __future__ import annotations

from alignkit.algos.objective import PolicyObjective, ValueObjective
from alignkit.config.rl import RLConfig


def policy_objective_of(cfg: RLConfig, kl_coef: float) -> PolicyObjective:
    """The policy's objective; `kl_coef` is the KL controller's current value (used when the KL goes
    into the loss)."""
    a = cfg.algo
    return PolicyObjective(
        loss=a.policy_loss, clip_low=a.clip_low, clip_high=a.clip_high, dual_clip=a.dual_clip, agg=a.loss_agg,
        max_len=cfg.response_limit, kl_coef=kl_coef if a.kl_placement == "loss" else 0.0,
        kl_estimator=a.kl_estimator, kl_clamp=a.kl_clamp, entropy_coef=a.entropy_coef,
    )


def value_objective_of(cfg: RLConfig) -> ValueObjective:
    """The critic's objective: its value clipping, with the policy's aggregation."""
    return ValueObjective(cfg.algo.value_clip, cfg.algo.loss_agg, cfg.response_limit)
