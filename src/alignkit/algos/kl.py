"""KL estimators between a sampling policy and a reference, and the KL-coefficient controllers.

Estimators (Schulman, "Approximating KL divergence", 2020, http://joschu.net/blog/kl-approx.html),
with samples drawn from the policy and ``x = ref_logp - logp`` (the log of ``r = p_ref / p``):

* ``k1 = -x``                 unbiased, high variance, can be negative;
* ``k2 = x**2 / 2``           biased, low variance, always >= 0;
* ``k3 = exp(x) - x - 1``     unbiased, low variance, always >= 0 (GRPO's, arXiv:2402.03300 eq. 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from torch import Tensor

KLKind = Literal["k1", "k2", "k3"]
KL_KINDS: tuple[str, ...] = get_args(KLKind)


def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: str = "k3", clamp: float | None = None) -> Tensor:
    """Per-token estimate of KL(policy || ref) from tokens sampled by the policy.

    Shapes: ``logp`` and ``ref_logp`` are ``(batch, seq)`` log-probs of the sampled tokens under the
    policy and the reference; the output has the same shape. Nothing is masked or averaged here: the
    caller masks and aggregates. ``clamp`` bounds the log-ratio to ``[-clamp, clamp]`` before the
    estimator (``exp`` in k3 cannot overflow then); ``None`` leaves it free.
    """
    x = ref_logp - logp
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    if kind == "k1":
        return -x
    if kind == "k2":
        return 0.5 * x.square()
    if kind == "k3":
        # expm1 keeps the small-x case accurate: exp(x) - 1 - x loses digits near 0 in float32.
        return torch.expm1(x) - x
    raise ValueError(f"unknown KL estimator {kind!r}; choose one of {KL_KINDS}")


# Where the log-ratio is cut before a bounded estimate (as verl does): k3's exp stays finite, so its
# gradient is never 0 * inf, and every estimate there is beyond a sensible bound (k1 20, k2 200, k3 5e8).
LOG_RATIO_LIMIT = 20.0


def kl_penalty(logp: Tensor, ref_logp: Tensor, kind: str = "k3", bound: float | None = None) -> Tensor:
    """The per-token KL estimate a run penalises (in the loss or in the reward): :func:`kl_estimate`
    clamped to ``[-bound, bound]``, as verl bounds its k3 ("low_var_kl") to +-10 and OpenRLHF clamps
    its log-ratio; ``None`` leaves it unbounded. A token far from the reference then weighs ``bound``
    and passes no gradient, instead of one k3 term of ``e^x`` dominating a whole batch. The log-ratio
    is cut at +-20 first (so a bound above 20 acts as 20 for k1). Shapes as :func:`kl_estimate`."""
    if bound is None:
        return kl_estimate(logp, ref_logp, kind)
    return kl_estimate(logp, ref_logp, kind, clamp=LOG_RATIO_LIMIT).clamp(-bound, bound)


@dataclass
class FixedKLController:
    """A constant KL coefficient ``beta``, with the adaptive controller's interface."""

    coef: float

    @property
    def value(self) -> float:
        return self.coef

    def update(self, current_kl: float | Tensor, n_steps: int) -> None:
        """No-op: the coefficient is fixed."""

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.coef}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """No-op: a fixed coefficient is configuration, not state (a resume that changes it uses the new one)."""


@dataclass
class AdaptiveKLController:
    """Proportional controller that steers the measured KL towards ``target``.

    Ziegler et al. 2019, arXiv:1909.08593, eq. 2:
    ``e = clip(KL / target - 1, -0.2, 0.2)``, ``beta <- beta * (1 + K_beta * e)``, here with
    ``K_beta = n_steps / horizon`` (the number of samples this update covers over the horizon, as in
    the paper's code and TRL).
    """

    init_coef: float
    target: float
    horizon: int
    _value: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.target <= 0 or self.horizon <= 0:
            raise ValueError("AdaptiveKLController needs target > 0 and horizon > 0")
        self._value = float(self.init_coef)

    @property
    def value(self) -> float:
        return self._value

    def update(self, current_kl: float | Tensor, n_steps: int) -> None:
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self._value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict[str, Any]:
        return {"value": self._value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._value = float(state["value"])
