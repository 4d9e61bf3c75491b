"""Reward-model loss: Bradley-Terry on preference pairs (Ouyang et al. 2022, arXiv:2203.02155 eq. 1),
with the optional margin of Llama 2 (Touvron et al. 2023, arXiv:2307.09288 eq. 2)."""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F

BTForm = Literal["sigmoid", "logexp"]
FORMS: tuple[str, ...] = get_args(BTForm)


def bradley_terry_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    denom: float,
    margin: torch.Tensor | None = None,
    form: str = "sigmoid",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum over pairs of -log sigmoid(r_c - r_r - m), divided by `denom` (pairs in the optimizer step).

    chosen, rejected, margin: `(batch,)`. `form='logexp'` writes the same loss as
    log(1 + exp(r_r - r_c + m)) (softplus); both are computed in a numerically stable way and agree.
    Metrics are additive across micro-batches: each sums to its step mean.
    """
    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    if form == "sigmoid":
        per_pair = -F.logsigmoid(diff)
    elif form == "logexp":
        per_pair = F.softplus(-diff)
    else:
        raise ValueError(f"unknown Bradley-Terry form '{form}', expected one of {FORMS}")
    loss = per_pair.sum() / denom
    return loss, {
        "accuracy": (chosen.detach() > rejected.detach()).float().sum() / denom,
        "chosen_score": chosen.detach().sum() / denom,
        "rejected_score": rejected.detach().sum() / denom,
        "score_gap": (chosen - rejected).detach().sum() / denom,
    }
