"""Per-step metrics of online RL: rewards, lengths, advantages (the losses report their own)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alignkit.algos.aggregate import masked_mean
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
        # How far the engine's sampling log-probs are from the trainer's (numerics, or another engine).
        diff = (exp.old_logp - exp.behaviour_logp).abs()
        m["logprob_mismatch/mean_abs"] = float(masked_mean(diff, exp.response_mask))
    return m


def mean_metrics(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Average each metric over the updates of a step (PPO epochs x mini-batches)."""
    keys = {k for r in rows for k in r}
    return {k: sum(r[k] for r in rows if k in r) / sum(1 for r in rows if k in r) for k in keys}
