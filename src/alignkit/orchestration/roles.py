"""The roles of an online-RL run: the units the executors place and the planner plans for.

`roles(cfg)` is the one place that says which roles a run has and how many workers each gets; the
controller creates exactly these, the executors place them, the planner costs them. What decides a
role is a fact of a registry entry or of the config, never a comparison of names: a critic exists
when an advantage estimator reads values, a reference when the KL goes somewhere, a teacher when an
estimator reads a teacher's log-probs (on-policy distillation). A new role is a name here and a line in
`roles`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignkit.algos.advantages import ADVANTAGE_ESTIMATORS

ROLE_NAMES = ("policy", "critic", "reference", "reward", "rollout", "teacher")
"""Every role an online-RL run can have (a plan's and `--ray.bundles`' keys)."""


@dataclass(frozen=True)
class Role:
    """How a role runs: its workers, and what the executors and the planner must know about it."""

    workers: int = 1
    trained: bool = False  # an optimizer and a backend (--policy.backend): sharded backends form a process group
    model: bool = True  # holds a model on a device; False (a rule, function or HTTP reward): a plan may leave it out


def roles(cfg: Any) -> dict[str, Role]:
    """The roles of the online-RL run configured by `cfg` (an RLConfig), in the order they are built."""
    a, dp = cfg.algo, cfg.policy.num_workers
    estimators = [ADVANTAGE_ESTIMATORS[name] for name, _ in a.advantage_terms]
    out = {
        "policy": Role(dp, trained=True),
        "rollout": Role(cfg.rollout.num_workers),
    }
    if not cfg.env_rewards:  # an environment or agent code that returns rewards needs no reward role
        out["reward"] = Role(model=bool(cfg.reward.model_path))
    if a.kl_placement != "none":
        out["reference"] = Role()
    if any(e.critic for e in estimators):
        out["critic"] = Role(dp, trained=True)
    if any(e.teacher for e in estimators):
        out["teacher"] = Role()  # frozen and forward-only, like the reference
    return out


def trained_role(workers: int) -> dict[str, Role]:
    """The one role of a supervised run: its trained model, as "policy"."""
    return {"policy": Role(workers, trained=True)}
