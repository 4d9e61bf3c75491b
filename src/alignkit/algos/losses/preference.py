"""Offline preference losses: DPO (and cDPO), IPO, SimPO, ORPO, the RPO NLL term, and KTO.

Inputs are SEQUENCE-level summed log-probs of the completion tokens, shape ``(batch,)``, and
completion lengths ``(batch,)`` for the length-normalised losses. Every loss is a mean over the
batch and returns ``(loss, metrics)`` with detached scalar metrics. The implicit reward of a
completion is ``beta * (policy - ref)`` unless a docstring says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

Metrics = dict[str, Tensor]


@dataclass(frozen=True, eq=False)
class PreferenceInput:
    """A batch of preference pairs; every field is ``(batch,)``.

    policy_*/ref_*: summed log-probs of the chosen / rejected completion under the policy and the
    frozen reference (reference-free losses leave ``ref_*`` as None). *_len: completion token counts.
    """

    policy_chosen: Tensor
    policy_rejected: Tensor
    ref_chosen: Tensor | None = None
    ref_rejected: Tensor | None = None
    chosen_len: Tensor | None = None
    rejected_len: Tensor | None = None


@dataclass(frozen=True)
class PreferenceConfig:
    """Hyper-parameters read by :func:`preference_loss`.

    beta: DPO/IPO/SimPO temperature. label_smoothing: cDPO flip probability. simpo_gamma: SimPO
    target margin. orpo_lambda: weight of ORPO's odds-ratio term. nll_weight: RPO's alpha, the weight
    of :func:`rpo_nll` added to any loss (0 = off).
    """

    beta: float = 0.1
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5
    orpo_lambda: float = 0.1
    nll_weight: float = 0.0


def _pair_metrics(
    chosen_reward: Tensor, rejected_reward: Tensor, policy_chosen: Tensor, policy_rejected: Tensor
) -> Metrics:
    with torch.no_grad():
        chosen_reward, rejected_reward = chosen_reward.detach(), rejected_reward.detach()
        return {
            "reward_acc": (chosen_reward > rejected_reward).to(chosen_reward.dtype).mean(),
            "chosen_reward": chosen_reward.mean(),
            "rejected_reward": rejected_reward.mean(),
            "margin": (chosen_reward - rejected_reward).mean(),
            "chosen_logp": policy_chosen.detach().mean(),
            "rejected_logp": policy_rejected.detach().mean(),
        }


def dpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Metrics]:
    """DPO (Rafailov et al. 2023, arXiv:2305.18290, eq. 7), with cDPO label smoothing.

    ``h = (pi_c - ref_c) - (pi_r - ref_r)`` (log-ratios of summed log-probs);
    ``loss = mean(-(1 - eps) * log sigma(beta h) - eps * log sigma(-beta h))``, where ``eps`` =
    ``label_smoothing`` is the assumed probability that a label is flipped (conservative DPO,
    Mitchell 2023, "A note on DPO with noisy preferences and relationship to IPO"); ``eps = 0`` is
    DPO. Equals ``log 2`` when the policy equals the reference. Shapes: all ``(batch,)``.
    """
    chosen_ratio, rejected_ratio = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    logits = beta * (chosen_ratio - rejected_ratio)
    losses = -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    metrics = _pair_metrics(beta * chosen_ratio, beta * rejected_ratio, policy_chosen, policy_rejected)
    return losses.mean(), metrics


def ipo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float = 0.1,
) -> tuple[Tensor, Metrics]:
    """IPO (Azar et al. 2023, arXiv:2310.12036, eq. 17): ``mean((h - 1 / (2 beta))^2)``.

    ``h = (pi_c - ref_c) - (pi_r - ref_r)`` of SUMMED log-probs, as in the paper (``beta`` is its
    ``tau``). TRL instead length-averages the log-probs for IPO; pass per-token means as the inputs
    to get that. Shapes: all ``(batch,)``.
    """
    chosen_ratio, rejected_ratio = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    losses = (chosen_ratio - rejected_ratio - 1.0 / (2.0 * beta)).square()
    metrics = _pair_metrics(beta * chosen_ratio, beta * rejected_ratio, policy_chosen, policy_rejected)
    return losses.mean(), metrics


def simpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    chosen_len: Tensor,
    rejected_len: Tensor,
    beta: float = 2.0,
    gamma: float = 0.5,
) -> tuple[Tensor, Metrics]:
    """SimPO (Meng et al. 2024, arXiv:2405.14734, eq. 6), reference-free.

    ``loss = mean(-log sigma(beta * pi_c / |y_c| - beta * pi_r / |y_r| - gamma))``: the implicit
    reward is the length-averaged log-prob times ``beta``; ``gamma`` is the absolute target margin
    (TRL's ``gamma_beta_ratio`` is ``gamma / beta``). Shapes: all ``(batch,)``.
    """
    chosen_reward = beta * policy_chosen / chosen_len
    rejected_reward = beta * policy_rejected / rejected_len
    losses = -F.logsigmoid(chosen_reward - rejected_reward - gamma)
    return losses.mean(), _pair_metrics(chosen_reward, rejected_reward, policy_chosen, policy_rejected)


def _log_odds(avg_logp: Tensor) -> Tensor:
    """``log(p / (1 - p))`` from ``log p`` without forming ``1 - p``.

    ``log(1 - p) = log(-expm1(x))`` near 0 and ``log1p(-exp(x))`` further out (Maechler 2012,
    "Accurately computing log(1 - exp(-|a|))"). ``x`` is kept below -1e-6 so that a sequence the
    policy is sure of (p = 1) gives a large finite log-odds, not inf and a nan gradient.
    """
    x = avg_logp.clamp(max=-1e-6)
    log1m = torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))
    return x - log1m


def orpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    chosen_len: Tensor,
    rejected_len: Tensor,
    lam: float = 0.1,
) -> tuple[Tensor, Metrics]:
    """ORPO's odds-ratio term (Hong et al. 2024, arXiv:2403.07691, eq. 6-7), weighted by ``lam``.

    With ``P(y) = exp(pi(y) / |y|)`` (the length-averaged likelihood) and ``odds = P / (1 - P)``:
    ``loss = lam * mean(-log sigma(log odds(y_c) - log odds(y_l)))``. This is ``lam * L_OR`` only;
    ORPO's full loss adds the chosen NLL ``L_SFT`` (eq. 6), which is :func:`rpo_nll` --
    :func:`preference_loss` adds it for ``"orpo"``. The implicit reward in the metrics is
    ``lam * pi(y) / |y|`` (as TRL); ``log_odds_ratio`` is the batch mean. Shapes: all ``(batch,)``.
    """
    chosen_avg, rejected_avg = policy_chosen / chosen_len, policy_rejected / rejected_len
    log_odds_ratio = _log_odds(chosen_avg) - _log_odds(rejected_avg)
    loss = lam * (-F.logsigmoid(log_odds_ratio)).mean()
    metrics = _pair_metrics(lam * chosen_avg, lam * rejected_avg, policy_chosen, policy_rejected)
    metrics["log_odds_ratio"] = log_odds_ratio.detach().mean()
    return loss, metrics


def rpo_nll(policy_chosen: Tensor, chosen_len: Tensor) -> tuple[Tensor, Metrics]:
    """Per-token NLL of the chosen completion, ``mean(-pi_c / |y_c|)``.

    RPO's added term (Pang et al. 2024, arXiv:2404.19733, the length-normalised NLL of their
    DPO+NLL loss, Sec. 2) and ORPO's ``L_SFT``. Shapes: ``(batch,)`` each; metric ``nll``.
    """
    loss = (-policy_chosen / chosen_len).mean()
    return loss, {"nll": loss.detach()}


def kto_loss(
    policy_logp: Tensor,
    ref_logp: Tensor,
    labels: Tensor,
    kl_ref_point: Tensor,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[Tensor, Metrics]:
    """KTO (Ethayarajh et al. 2024, arXiv:2402.01306, eq. 8).

    ``r = policy_logp - ref_logp`` (summed log-probs, ``(batch,)``), ``z0 = kl_ref_point`` (scalar,
    used detached; see :func:`kto_kl_ref_point`). ``v = lambda_D sigma(beta (r - z0))`` where
    ``labels`` is true (desirable), ``lambda_U sigma(beta (z0 - r))`` where false; the loss is
    ``mean(lambda_y - v)`` over the batch. Metrics: ``chosen_reward`` / ``rejected_reward`` (mean
    ``beta * r`` over desirable / undesirable samples; 0 if there are none), ``kl_ref_point``,
    ``desirable_frac``.
    """
    labels = labels.bool()
    z0 = kl_ref_point.detach()
    log_ratio = policy_logp - ref_logp
    value = torch.where(
        labels,
        desirable_weight * torch.sigmoid(beta * (log_ratio - z0)),
        undesirable_weight * torch.sigmoid(beta * (z0 - log_ratio)),
    )
    weight = torch.where(labels, desirable_weight, undesirable_weight).to(value.dtype)
    loss = (weight - value).mean()
    with torch.no_grad():
        reward = beta * log_ratio.detach()
        n_good = labels.sum().clamp(min=1)
        n_bad = (~labels).sum().clamp(min=1)
        metrics = {
            "chosen_reward": torch.where(labels, reward, 0.0).sum() / n_good,
            "rejected_reward": torch.where(labels, 0.0, reward).sum() / n_bad,
            "kl_ref_point": z0,
            "desirable_frac": labels.to(reward.dtype).mean(),
        }
    return loss, metrics


def kto_kl_ref_point(policy_logp_mismatched: Tensor, ref_logp_mismatched: Tensor) -> Tensor:
    """KTO's reference point ``z0 = max(0, mean(policy - ref))``, detached (arXiv:2402.01306, Sec. 4).

    The inputs are ``(batch,)`` summed log-probs of MISMATCHED pairs (a completion scored under an
    unrelated prompt of the batch), a biased but cheap estimate of KL(policy || ref); no gradient
    flows through it, as in the paper. Averaging across data-parallel ranks is the caller's job.
    """
    return (policy_logp_mismatched - ref_logp_mismatched).detach().mean().clamp(min=0.0)


def _need(value: Tensor | None, field: str, name: str) -> Tensor:
    if value is None:
        raise ValueError(f"preference loss {name!r} needs {field}")
    return value


def _dpo(inp: PreferenceInput, cfg: PreferenceConfig) -> tuple[Tensor, Metrics]:
    ref_c, ref_r = _need(inp.ref_chosen, "ref_chosen", "dpo"), _need(inp.ref_rejected, "ref_rejected", "dpo")
    return dpo_loss(inp.policy_chosen, inp.policy_rejected, ref_c, ref_r, cfg.beta, cfg.label_smoothing)


def _ipo(inp: PreferenceInput, cfg: PreferenceConfig) -> tuple[Tensor, Metrics]:
    ref_c, ref_r = _need(inp.ref_chosen, "ref_chosen", "ipo"), _need(inp.ref_rejected, "ref_rejected", "ipo")
    return ipo_loss(inp.policy_chosen, inp.policy_rejected, ref_c, ref_r, cfg.beta)


def _simpo(inp: PreferenceInput, cfg: PreferenceConfig) -> tuple[Tensor, Metrics]:
    len_c = _need(inp.chosen_len, "chosen_len", "simpo")
    len_r = _need(inp.rejected_len, "rejected_len", "simpo")
    return simpo_loss(inp.policy_chosen, inp.policy_rejected, len_c, len_r, cfg.beta, cfg.simpo_gamma)


def _orpo(inp: PreferenceInput, cfg: PreferenceConfig) -> tuple[Tensor, Metrics]:
    len_c = _need(inp.chosen_len, "chosen_len", "orpo")
    len_r = _need(inp.rejected_len, "rejected_len", "orpo")
    loss, metrics = orpo_loss(inp.policy_chosen, inp.policy_rejected, len_c, len_r, cfg.orpo_lambda)
    nll, nll_metrics = rpo_nll(inp.policy_chosen, len_c)
    return nll + loss, {**metrics, **nll_metrics}


PreferenceFn = Callable[[PreferenceInput, PreferenceConfig], tuple[Tensor, Metrics]]

PREFERENCE_LOSSES: dict[str, PreferenceFn] = {"dpo": _dpo, "ipo": _ipo, "simpo": _simpo, "orpo": _orpo}


def preference_loss(
    name: str, inputs: PreferenceInput, cfg: PreferenceConfig | None = None
) -> tuple[Tensor, Metrics]:
    """Dispatch to ``PREFERENCE_LOSSES[name]`` and add ``cfg.nll_weight * rpo_nll`` when non-zero.

    ``"dpo"`` with ``label_smoothing > 0`` is cDPO; any loss with ``nll_weight > 0`` gets the RPO
    term; ``"orpo"`` always includes its own NLL with weight 1 (eq. 6). KTO takes unpaired data and
    is called directly (:func:`kto_loss`).
    """
    if name not in PREFERENCE_LOSSES:
        raise ValueError(f"unknown preference loss {name!r}; choose one of {sorted(PREFERENCE_LOSSES)}")
    cfg = cfg or PreferenceConfig()
    loss, metrics = PREFERENCE_LOSSES[name](inputs, cfg)
    if cfg.nll_weight:
        nll, nll_metrics = rpo_nll(inputs.policy_chosen, _need(inputs.chosen_len, "chosen_len", "rpo"))
        loss = loss + cfg.nll_weight * nll
        metrics = {**metrics, **nll_metrics}
    return loss, metrics
