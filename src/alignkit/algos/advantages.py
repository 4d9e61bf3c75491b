"""Advantage estimators for online RL, behind one signature and a registry.

Every estimator is ``fn(inp: AdvantageInput) -> (advantages, returns)``, both ``(batch, seq)``,
zero on positions where ``mask`` is false, and free of autograd history. Group estimators take
``group_ids`` (samples of one prompt share an id; groups may have any size and need not be
contiguous) and are vectorised with ``torch.unique(return_inverse=True)`` + ``index_add``.

A registry entry (:class:`Estimator`) says what the rest of a run must provide: a critic (``gae``),
groups of samples per prompt, one reward per sequence, a teacher (``opd``). The run's roles and checks
follow from it. A run's advantage is a weighted sum of estimators' advantages (:func:`combine`): one
estimator for every algorithm, plus the task reward's for on-policy distillation with a reward weight.

**A group of one sample** has nothing to compare with, so its group baseline is the sample itself:
its group-relative reward is 0. ``grpo``, ``dr_grpo`` and ``rloo`` give it advantage 0 (no
gradient); ``reinforce_pp_baseline`` gives it 0 before the batch normalisation. Runs never form such
groups (``--rollout.n_samples_per_prompt`` must be at least 2 for a group estimator, and dynamic
sampling keeps whole groups); the rule covers direct calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.algos.aggregate import masked_mean
from alignkit.algos.losses.distill import reverse_kl_advantage


@dataclass(frozen=True, eq=False)
class AdvantageInput:
    """What the estimators read.

    rewards: ``(batch,)`` final sequence-level reward.
    mask: ``(batch, seq)`` bool/float, true on the response tokens that act (the MDP's actions).
    group_ids: ``(batch,)`` long, prompt id of each sample (group estimators only).
    values: ``(batch, seq)`` critic values V(s_t) (``gae`` only).
    logp, teacher_logp: ``(batch, seq)`` log-probs of each sampled token under the policy that sampled
        it (before the update) and under the teacher (``opd`` only).
    token_rewards: ``(batch, seq)`` per-token shaping (e.g. ``-beta * KL``) added to the sequence
        reward, which sits on the last masked token (token-level estimators only).
    gamma, lam: discount and GAE lambda. eps: added to standard deviations before dividing.
    """

    rewards: Tensor
    mask: Tensor
    group_ids: Tensor | None = None
    values: Tensor | None = None
    token_rewards: Tensor | None = None
    logp: Tensor | None = None
    teacher_logp: Tensor | None = None
    gamma: float = 1.0
    lam: float = 1.0
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.mask.dim() != 2 or self.rewards.shape != self.mask.shape[:1]:
            shapes = f"{tuple(self.rewards.shape)}, {tuple(self.mask.shape)}"
            raise ValueError(f"need rewards (batch,) and mask (batch, seq); got {shapes}")
        for name in ("values", "token_rewards", "logp", "teacher_logp"):
            t = getattr(self, name)
            if t is not None and t.shape != self.mask.shape:
                raise ValueError(f"{name} must be (batch, seq) like mask; got {tuple(t.shape)}")
        if self.group_ids is not None and self.group_ids.shape != self.rewards.shape:
            raise ValueError(f"group_ids must be (batch,); got {tuple(self.group_ids.shape)}")


EstimatorFn = Callable[[AdvantageInput], tuple[Tensor, Tensor]]


def _float(x: Tensor) -> Tensor:
    x = x.detach()
    return x if x.is_floating_point() else x.float()


def _token_level_rewards(rewards: Tensor, mask: Tensor, token_rewards: Tensor | None) -> Tensor:
    """``(batch, seq)``: ``token_rewards`` on masked tokens plus the sequence reward on the last one."""
    m = mask.bool()
    out = torch.zeros(m.shape, dtype=rewards.dtype, device=m.device)
    if token_rewards is not None:
        out = torch.where(m, _float(token_rewards).to(out.dtype), out)
    positions = torch.arange(m.shape[1], device=m.device).expand_as(m)
    last = torch.where(m, positions, -1).amax(-1)
    # A row with no masked token (padding) gets no reward rather than one on a random position.
    has_tokens = (last >= 0).to(rewards.dtype)
    return out.scatter_add(-1, last.clamp(min=0)[:, None], (rewards * has_tokens)[:, None])


def _masked_first(m: Tensor) -> Tensor:
    """Per-row permutation that moves the masked positions, in order, to the front."""
    return torch.argsort((~m).to(torch.uint8), dim=-1, stable=True)


def _reverse_discounted_cumsum(x: Tensor, coef: float) -> Tensor:
    """``y_t = sum_{k>=t} coef**(k-t) * x_k`` along the last dim, in log2(seq) vectorised steps.

    Hillis-Steele scan: after the step with shift ``d`` each ``y_t`` holds the first ``2d`` terms.
    It stops once ``coef**d`` underflows the dtype: the terms left are below its resolution, and
    multiplying by subnormals would only make the CPU crawl.
    """
    y, shift, power = x, 1, coef
    tiny = torch.finfo(x.dtype).tiny
    while shift < x.shape[-1] and power >= tiny:
        y = y + power * F.pad(y[..., shift:], (0, shift))
        power, shift = power * power, shift * 2
    return y


def _next_masked(x: Tensor, m: Tensor) -> Tensor:
    """``x`` at the next masked position of the same row (0 after the last one), shape of ``x``."""
    order = _masked_first(m)
    compact = torch.where(m.gather(-1, order), x.gather(-1, order), 0.0)
    return torch.zeros_like(x).scatter(-1, order, F.pad(compact[..., 1:], (0, 1)))


def _masked_reverse_scan(x: Tensor, m: Tensor, coef: float) -> Tensor:
    """Discounted reverse cumsum over the masked positions only: unmasked ones are skipped (as if
    removed, e.g. tool output inside a multi-turn response) and come out as 0."""
    order = _masked_first(m)
    compact = torch.where(m.gather(-1, order), x.gather(-1, order), 0.0)
    scanned = _reverse_discounted_cumsum(compact, coef)
    return torch.where(m, torch.zeros_like(x).scatter(-1, order, scanned), 0.0)


def whiten(x: Tensor, mask: Tensor, eps: float = 1e-6) -> Tensor:
    """(x - mean) / (std + eps) with mean and population std over all masked tokens of the batch."""
    mean = masked_mean(x, mask)
    std = masked_mean((x - mean).square(), mask).sqrt()
    return torch.where(mask.bool(), (x - mean) / (std + eps), 0.0)


def _group_stats(rewards: Tensor, group_ids: Tensor | None, name: str) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample ``(group mean, unbiased group std, group size)``; a group of one has std 0."""
    if group_ids is None:
        raise ValueError(f"advantage estimator {name!r} needs group_ids")
    unique_ids, inverse = torch.unique(group_ids, return_inverse=True)
    zeros = torch.zeros(unique_ids.numel(), dtype=rewards.dtype, device=rewards.device)
    size = zeros.index_add(0, inverse, torch.ones_like(rewards))
    mean = zeros.index_add(0, inverse, rewards) / size
    sq_dev = zeros.index_add(0, inverse, (rewards - mean[inverse]).square())
    std = (sq_dev / (size - 1).clamp(min=1)).sqrt()
    return mean[inverse], std[inverse], size[inverse]


def _sequence_level(inp: AdvantageInput, name: str, adv: Tensor) -> tuple[Tensor, Tensor]:
    """Broadcast a ``(batch,)`` advantage over the masked tokens; returns = advantages."""
    if inp.token_rewards is not None:
        # Silently dropping per-token rewards would change the objective: the KL goes in the loss here.
        raise ValueError(f"{name!r} is sequence-level and cannot use token_rewards")
    tok = torch.where(inp.mask.bool(), adv[:, None], 0.0)
    return tok, tok


def gae(inp: AdvantageInput) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, arXiv:1506.02438, eq. 16), for PPO.

    Per-token reward ``r_t`` = ``token_rewards`` plus the sequence reward on the last masked token;
    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = sum_l (gamma*lam)**l * delta_{t+l}``, where
    ``t+1`` is the next *masked* position (unmasked ones are skipped) and V after the last one is 0
    (the response ends the episode). ``returns = A + V`` (the critic's target). Shapes
    ``(batch, seq)``. Computed with a log-depth scan; :func:`gae_reference` is the plain loop it is
    tested against.
    """
    if inp.values is None:
        raise ValueError("advantage estimator 'gae' needs values")
    m = inp.mask.bool()
    rewards, values = _float(inp.rewards), _float(inp.values)
    dtype = torch.promote_types(rewards.dtype, values.dtype)
    rewards, values = rewards.to(dtype), values.to(dtype)
    r = _token_level_rewards(rewards, m, inp.token_rewards)
    delta = r + inp.gamma * _next_masked(values, m) - values
    adv = _masked_reverse_scan(delta, m, inp.gamma * inp.lam)
    return adv, torch.where(m, adv + values, 0.0)


def gae_reference(inp: AdvantageInput) -> tuple[Tensor, Tensor]:
    """Plain-loop GAE with the same conventions as :func:`gae`; slow, for tests only."""
    if inp.values is None:
        raise ValueError("gae_reference needs values")
    batch, _ = inp.mask.shape
    adv = torch.zeros(inp.mask.shape, dtype=torch.float64)
    for b in range(batch):
        idx = [t for t in range(inp.mask.shape[1]) if bool(inp.mask[b, t])]
        if not idx:
            continue
        rew = [float(inp.token_rewards[b, t]) if inp.token_rewards is not None else 0.0 for t in idx]
        rew[-1] += float(inp.rewards[b])
        running = 0.0
        for j in reversed(range(len(idx))):
            v_next = float(inp.values[b, idx[j + 1]]) if j + 1 < len(idx) else 0.0
            delta = rew[j] + inp.gamma * v_next - float(inp.values[b, idx[j]])
            running = delta + inp.gamma * inp.lam * running
            adv[b, idx[j]] = running
    returns = torch.where(inp.mask.bool(), adv + inp.values.double(), 0.0)
    return adv, returns


def grpo(inp: AdvantageInput) -> tuple[Tensor, Tensor]:
    """GRPO outcome advantage (Shao et al. 2024, arXiv:2402.03300, Sec. 4.1.2):
    ``(r - group mean) / (group std + eps)`` on every masked token.

    The std is the sample (unbiased, n-1) std, as ``torch.std`` in TRL's GRPOTrainer; a group of one
    gets advantage 0. Sequence-level: ``returns`` = ``advantages``.
    """
    r = _float(inp.rewards)
    mean, std, _ = _group_stats(r, inp.group_ids, "grpo")
    return _sequence_level(inp, "grpo", (r - mean) / (std + inp.eps))


def dr_grpo(inp: AdvantageInput) -> tuple[Tensor, Tensor]:
    """Dr. GRPO advantage (Liu et al. 2025, arXiv:2503.20783, Fig. 1): ``r - group mean``, no std
    division. Sequence-level: ``returns`` = ``advantages``."""
    r = _float(inp.rewards)
    mean, _, _ = _group_stats(r, inp.group_ids, "dr_grpo")
    return _sequence_level(inp, "dr_grpo", r - mean)


def rloo(inp: AdvantageInput) -> tuple[Tensor, Tensor]:
    """REINFORCE leave-one-out (Ahmadian et al. 2024, arXiv:2402.14740, the RLOO estimator, after
    Kool et al. 2019): ``r_i - mean_{j != i} r_j``, which equals ``k / (k - 1) * (r_i - group mean)``
    for a group of size ``k``; a group of one has no baseline and gets 0. Sequence-level:
    ``returns`` = ``advantages``.
    """
    r = _float(inp.rewards)
    mean, _, size = _group_stats(r, inp.group_ids, "rloo")
    scale = torch.where(size > 1, size / (size - 1).clamp(min=1), 0.0)
    return _sequence_level(inp, "rloo", scale * (r - mean))


def _reinforce_pp(inp: AdvantageInput, rewards: Tensor) -> tuple[Tensor, Tensor]:
    """Return-to-go of the token rewards, then whitened over all masked tokens of the batch."""
    m = inp.mask.bool()
    returns = _masked_reverse_scan(_token_level_rewards(rewards, m, inp.token_rewards), m, inp.gamma)
    return whiten(returns, inp.mask, inp.eps), returns


def reinforce_pp(inp: AdvantageInput) -> tuple[Tensor, Tensor]:
    """REINFORCE++ (Hu et al. 2025, arXiv:2501.03262 v9, Sec. 3), for token-level rewards.

    Token rewards (sequence reward on the last masked token + ``token_rewards``, e.g. the per-token
    KL penalty), return-to-go ``G_t = sum_{k>=t} gamma**(k-t) r_k`` over masked tokens, then global
    batch normalisation ``(G - mean) / (std + eps)`` with mean and population std over all masked
    tokens of the batch. ``returns`` = ``G`` before normalisation.
    """
    return _reinforce_pp(inp, _float(inp.rewards))


def reinforce_pp_baseline(inp: AdvantageInput) -> tuple[Tensor, Tensor]:
    """REINFORCE++ w/ baseline (Hu et al. 2025, arXiv:2501.03262 v9, Sec. 3): the sequence reward
    minus its group mean, then exactly :func:`reinforce_pp` (token rewards, return-to-go, global
    normalisation). ``returns`` = the return-to-go before normalisation."""
    r = _float(inp.rewards)
    mean, _, _ = _group_stats(r, inp.group_ids, "reinforce_pp_baseline")
    return _reinforce_pp(inp, r - mean)


def opd(inp: AdvantageInput) -> tuple[Tensor, Tensor]:
    """On-policy distillation (GKD with lambda = 1, beta = 1, Agarwal et al. 2024, arXiv:2306.13649; the
    per-token recipe of Lu et al. 2025, "On-Policy Distillation", Thinking Machines): on the policy's own
    samples, the advantage of token t is ``-(logp_t - teacher_logp_t)``, minus the single-sample estimate
    of the reverse KL(policy || teacher) at t (`losses.distill.reverse_kl_advantage`). No discount, no
    baseline, no normalisation: each token is credited with its own term only. The sequence reward is
    not read (a task reward is added by :func:`combine`). ``returns`` = ``advantages``."""
    if inp.logp is None or inp.teacher_logp is None:
        raise ValueError("advantage estimator 'opd' needs logp and teacher_logp")
    if inp.token_rewards is not None:
        raise ValueError("'opd' reads no token_rewards: put the KL to the reference in the loss")
    adv = reverse_kl_advantage(_float(inp.logp), _float(inp.teacher_logp), _float(inp.mask))
    return adv, adv


@dataclass(frozen=True)
class Estimator:
    """A registry entry: the estimator and what it needs from the run."""

    fn: EstimatorFn
    critic: bool = False  # reads a critic's values: the run has a critic role
    grouped: bool = False  # compares the samples of one prompt: needs group_ids and several samples each
    sequence_reward: bool = False  # sees one reward per sequence: a per-token reward (the KL penalty) is summed into it
    teacher: bool = False  # reads a teacher's log-probs of the sampled tokens: the run has a teacher role

    def __call__(self, inp: AdvantageInput) -> tuple[Tensor, Tensor]:
        return self.fn(inp)


ADVANTAGE_ESTIMATORS: dict[str, Estimator] = {
    "gae": Estimator(gae, critic=True),
    "grpo": Estimator(grpo, grouped=True, sequence_reward=True),
    "dr_grpo": Estimator(dr_grpo, grouped=True, sequence_reward=True),
    "rloo": Estimator(rloo, grouped=True, sequence_reward=True),
    "reinforce_pp": Estimator(reinforce_pp),
    "reinforce_pp_baseline": Estimator(reinforce_pp_baseline, grouped=True),
    "opd": Estimator(opd, teacher=True),
}
EstimatorName = Literal[tuple(ADVANTAGE_ESTIMATORS)]  # type: ignore[valid-type]  # the registry's keys
RewardEstimatorName = Literal[tuple(k for k, e in ADVANTAGE_ESTIMATORS.items() if not e.teacher)]  # type: ignore[valid-type]
"""The estimators of a task reward (every one that reads no teacher)."""


def combine(terms: list[tuple[float, Estimator, AdvantageInput]]) -> tuple[Tensor, Tensor]:
    """The advantage of a run: ``sum_i w_i * A_i`` over its ``(weight, estimator, input)`` terms, all
    ``(batch, seq)``. ``returns`` are those of the term that reads a critic (its regression targets),
    else of the first term."""
    outs = [(w, e, e(inp)) for w, e, inp in terms]
    adv = sum(w * a for w, _, (a, _) in outs)
    returns = next((r for _, e, (_, r) in outs if e.critic), outs[0][2][1])
    return adv, returns
