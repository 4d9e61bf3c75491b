"""Knowledge distillation: divergences between a student's and a teacher's next-token distributions.

GKD (Agarwal et al. 2024, "On-Policy Distillation of Language Models: Learning from Self-Generated
Mistakes", arXiv:2306.13649) trains the student on a per-token divergence to the teacher, summed over
the vocabulary at every position of a sequence, on dataset responses or on the student's own samples.
Its generalised Jensen-Shannon divergence `generalized_jsd` interpolates between the two KLs with
`beta`. All distributions are softmax(logits / temperature), the same temperature on both sides
(as GKD's and TRL's `GKDTrainer`).

Top-k (`teacher_topk`, `topk_terms`): to bound memory the teacher keeps its k most likely ids per
position, and BOTH distributions are coarsened to k + 1 outcomes: those k ids, and one "tail" outcome
holding the mass of every other id (the teacher's 1 - its top-k mass, computed exactly from its full
logits when it scores; the student's mass outside the teacher's k ids, from its full logits). Nothing
is renormalised. Why not renormalise both sides over the k ids: that compares the two distributions
conditioned on the k ids, which is 0 for a student that matches the teacher's ratios there but puts
99% of its mass elsewhere, so nothing would pull the student's mass back onto the teacher's support.
The (k + 1)-outcome version is a divergence between two genuine distributions (>= 0, and 0 only when
the student gives each of the k ids the teacher's probability, hence the tail too); each divergence
here is an f-divergence, so by the data-processing inequality it is at most the full-vocabulary value
and tightens as k grows; at k = vocabulary the tail is empty on both sides and it equals the full one.

The on-policy distillation advantage (`reverse_kl_advantage`) is GKD's lambda = 1, beta = 1 setting
(the student samples, the loss is the reverse KL) with the single-sample estimate of the reverse KL on
the sampled token as a per-token reward, as in Thinking Machines' "On-Policy Distillation" (Lu et
al. 2025) and verl/slime's recipes: it plugs into a policy-gradient loss in place of an advantage.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DIVERGENCE_BETA: dict[str, float | None] = {"forward_kl": 0.0, "reverse_kl": 1.0, "jsd": None}
"""`--distill.loss` -> the `generalized_jsd` beta it is (None: jsd takes `--distill.beta`)."""


def _floor(x: Tensor) -> Tensor:
    """-inf (a token of probability 0) -> the most negative finite float. exp() still gives 0, but
    differences and logaddexp stay finite, so a 0 * (-inf - -inf) term cannot turn a value or a
    gradient into NaN."""
    return x.clamp(min=torch.finfo(x.dtype).min)


def kl(p_logp: Tensor, q_logp: Tensor) -> Tensor:
    """KL(p || q) = sum_v p_v (log p_v - log q_v) over the last dim; `(..., V)` log-probs -> `(...,)`.
    Terms where p_v = 0 are 0."""
    p_logp, q_logp = _floor(p_logp), _floor(q_logp)
    return (p_logp.exp() * (p_logp - q_logp)).sum(-1)


def generalized_jsd(student_logp: Tensor, teacher_logp: Tensor, beta: float) -> Tensor:
    """GKD's generalised JSD (its eq. 1, P = teacher, Q = student), per position.

    student_logp, teacher_logp: `(..., V)` normalised log-probs over the same support -> `(...,)`.
    For 0 < beta < 1: beta * KL(P || M) + (1 - beta) * KL(Q || M) with M = beta * P + (1 - beta) * Q.
    The formula is 0 at both ends (M is one of the two), so, as GKD's discussion and TRL's
    `GKDTrainer.generalized_jsd_loss`, beta = 0 means its normalised limit JSD/beta -> KL(P || Q), the
    FORWARD KL (teacher || student: mass-covering, the classic distillation loss), and beta = 1 the
    limit JSD/(1 - beta) -> KL(Q || P), the REVERSE KL (student || teacher: mode-seeking).
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if beta == 0.0:
        return kl(teacher_logp, student_logp)
    if beta == 1.0:
        return kl(student_logp, teacher_logp)
    s, t = _floor(student_logp), _floor(teacher_logp)
    mix = torch.logaddexp(s + math.log1p(-beta), t + math.log(beta))
    return beta * kl(t, mix) + (1.0 - beta) * kl(s, mix)


def bucket_logprobs(logits: Tensor, ids: Tensor) -> Tensor:
    """`(n, k + 1)`: log softmax(logits) at `ids` `(n, k)`, and in the last column the log of the mass of
    every other id (the tail; -inf floored when `ids` covers the vocabulary). logits `(n, V)`. The tail
    is a log-sum-exp over the other ids, not log(1 - top-k mass), which loses all precision when the
    top-k mass is close to 1."""
    logits = logits.float()
    lse = logits.logsumexp(-1, keepdim=True)
    picked = logits.gather(-1, ids) - lse
    low = torch.finfo(logits.dtype).min  # not -inf: an empty tail must not make a NaN gradient
    if ids.shape[-1] >= logits.shape[-1]:
        tail = torch.full_like(lse, low)
    else:
        tail = logits.scatter(-1, ids, low).logsumexp(-1, keepdim=True) - lse
    return torch.cat([picked, tail], -1)


def teacher_topk(logits: Tensor, k: int, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """The teacher's k most likely ids `(n, k)` and its `(n, k + 1)` bucket log-probs (`bucket_logprobs`)
    under softmax(logits / temperature); logits `(n, V)`."""
    scaled = logits.float() / temperature
    ids = scaled.topk(min(k, scaled.shape[-1]), dim=-1).indices
    return ids, bucket_logprobs(scaled, ids)


def _terms(student_logp: Tensor, teacher_logp: Tensor, target_logp: Tensor, beta: float) -> Tensor:
    return torch.stack([generalized_jsd(student_logp, teacher_logp, beta), kl(teacher_logp, student_logp),
                        kl(student_logp, teacher_logp), target_logp], -1)


def full_vocab_terms(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, *, beta: float,
                     temperature: float = 1.0) -> Tensor:
    """Per-token terms over the full vocabulary, `(n, 4)`: [the loss divergence (`generalized_jsd` with
    `beta`), forward KL(teacher || student), reverse KL(student || teacher), the student's log-prob of
    `targets` `(n,)`]. Logits `(n, V)` of both sides; softmax(logits / temperature)."""
    s = torch.log_softmax(student_logits.float() / temperature, -1)
    t = torch.log_softmax(teacher_logits.float() / temperature, -1)
    return _terms(s, t, s.gather(-1, targets[:, None]).squeeze(-1), beta)


def topk_terms(student_logits: Tensor, teacher_ids: Tensor, teacher_logp: Tensor, targets: Tensor, *,
               beta: float, temperature: float = 1.0) -> Tensor:
    """`full_vocab_terms` over the teacher's top-k support (see the module docstring): the student's
    logits `(n, V)` coarsened to the teacher's k ids `(n, k)` plus the tail, against the teacher's
    `(n, k + 1)` bucket log-probs from `teacher_topk`. `(n, 4)`, the same columns."""
    scaled = student_logits.float() / temperature
    s = bucket_logprobs(scaled, teacher_ids)
    target = scaled.gather(-1, targets[:, None]).squeeze(-1) - scaled.logsumexp(-1)
    return _terms(s, teacher_logp, target, beta)


def reverse_kl_advantage(student_logp: Tensor, teacher_logp: Tensor, mask: Tensor) -> Tensor:
    """On-policy distillation's per-token advantage `-(log pi_student(y_t) - log pi_teacher(y_t))` on the
    student's own sampled tokens y_t, 0 off `mask`; all `(batch, seq)`.

    Its expectation under the student's sampling is minus the per-token reverse KL(student || teacher),
    so a policy-gradient step on it descends the reverse KL (GKD lambda = 1, beta = 1). No discount:
    each token is credited with its own term only (the Thinking Machines recipe)."""
    return -(student_logp - teacher_logp) * mask
