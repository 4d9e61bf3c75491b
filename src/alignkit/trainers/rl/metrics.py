"""Per-step metrics of online RL: rewards, lengths, advantages (the losses report their own)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alignkit.algos.aggregate import masked_mean
from alignkit.algos.metric import merge_all, values
from alignkit.trainers.rl.teacher_metrics import teacher_metrics
from alignkit.workers.experience import Experience


def batch_metrics(exp: Experience, rounds: Sequence) -> dict[str, float]:
    """`rounds`: the step's generation rounds (single responses, or multi-turn trajectories whose lengths
    count every token after the prompt and which add their `env/...` metrics)."""
    lengths = torch.cat([r.response_lengths() for r in rounds]).float()
    acting = exp.advantages[exp.response_mask.bool()]  # empty when overlong filtering masked every row
    m = {
        "reward/mean": float(exp.rewards.mean()),
        "reward/std": float(exp.rewards.std()) if exp.n > 1 else 0.0,
        "response_length/mean": float(lengths.mean()),
        "response_length/max": float(lengths.max()),
        "response_length/truncated_frac": float(torch.cat([r.truncated() for r in rounds]).double().mean()),
        "advantages/mean": float(masked_mean(exp.advantages, exp.response_mask)),
        "advantages/max": float(acting.max()) if acting.numel() else 0.0,
        "advantages/min": float(acting.min()) if acting.numel() else 0.0,
        "sequences": exp.n,
    }
    for name in rounds[0].components:
        m[f"reward/{name}"] = float(torch.cat([r.components[name].float() for r in rounds]).mean())
    m |= values(merge_all(r.metrics for r in rounds))  # multi-turn: the env/ metrics of every round
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
