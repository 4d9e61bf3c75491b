"""Per-step metrics of online RL: rewards, lengths, advantages (the losses report their own)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alignkit.algos.aggregate import masked_mean
from alignkit.algos.metric import values
from alignkit.trainers.rl.teacher_metrics import teacher_metrics
from alignkit.workers.experience import Experience


def batch_metrics(exp: Experience, rounds: Sequence, max_new_tokens: int) -> dict[str, float]:
    gens = [g for r in rounds for g in r.gens]
    lengths = torch.tensor([len(g.response_ids) for g in gens], dtype=torch.float32)
    m = {
        "reward/mean": float(exp.rewards.mean()),
        "reward/std": float(exp.rewards.std()) if exp.n > 1 else 0.0,
        "response_length/mean": float(lengths.mean()),
        "response_length/max": float(lengths.max()),
        "response_length/truncated_frac": sum(g.finish_reason == "length" for g in gens) / len(gens),
        "advantages/mean": float(masked_mean(exp.advantages, exp.response_mask)),
        "advantages/max": float(exp.advantages[exp.response_mask.bool()].max()),
        "advantages/min": float(exp.advantages[exp.response_mask.bool()].min()),
        "sequences": exp.n,
    }
    for name in rounds[0].components:
        m[f"reward/{name}"] = float(torch.cat([r.components[name].float() for r in rounds]).mean())
    if exp.old_logp is not None:
        m |= logprob_mismatch(exp.old_logp, exp.behaviour_logp, exp.response_mask)
    if exp.teacher_logp is not None:
        m |= values(teacher_metrics(exp))
    return m


def logprob_mismatch(trainer_logp: torch.Tensor, rollout_logp: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """How far the engine's sampling log-probs are from the trainer's on the response tokens (numerics,
    another engine such as vLLM, or an older policy): the mean absolute difference, and the largest
    ratio pi_trainer / pi_rollout of a token, the importance weight that --rollout.tis_cap truncates."""
    diff = trainer_logp - rollout_logp
    on = mask.bool()
    # float64 so that a far-off token shows as a huge ratio, not an overflow
    ratio_max = float(diff[on].max().double().exp()) if on.any() else 1.0
    return {"logprob_mismatch/mean_abs": float(masked_mean(diff.abs(), mask)), "logprob_mismatch/ratio_max": ratio_max}
