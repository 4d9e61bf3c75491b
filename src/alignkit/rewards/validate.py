"""Checks on what a reward source returns: one finite number per sample, or an error that names the
sample and the source. A missing or NaN reward is never replaced by zero: that would train the
policy on a silent lie."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch

from alignkit.errors import AlignkitError
from alignkit.rewards.base import RewardInput


class RewardError(AlignkitError):
    """A reward source failed or returned something that is not one finite number per sample."""


def sample_name(batch: RewardInput, i: int, offset: int = 0) -> str:
    """`sample 3 (data/prompts.jsonl:17, prompt 'What is 2+2?...')`: enough to find the sample in the
    data (its line when the batch carries sources). `batch` may be a chunk of a larger batch that starts
    at sample `offset`."""
    prompt = batch.prompts[i] if i < len(batch.prompts) else ""
    head = prompt[:40] + ("..." if len(prompt) > 40 else "")
    where = f"{batch.sources[i]}, " if i < len(batch.sources) else ""
    return f"sample {offset + i} ({where}prompt {head!r})"


def labels_of(batch: RewardInput) -> list[Any]:
    """One label per sample; a batch given without labels gets None for each."""
    n = len(batch.prompts)
    if len(batch.responses) != n:
        raise RewardError(f"reward input has {n} prompts but {len(batch.responses)} responses")
    if not batch.labels:
        return [None] * n
    if len(batch.labels) != n:
        raise RewardError(f"reward input has {n} prompts but {len(batch.labels)} labels")
    return list(batch.labels)


def check_scores(values: Any, batch: RewardInput, source: str, offset: int = 0) -> torch.Tensor:
    """`values` (a list, tuple, 1-D tensor or array) -> `(batch,)` float32, or a RewardError naming
    `source` and the first bad sample (numbered from `offset` when `batch` is a chunk)."""
    n = len(batch.prompts)
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().tolist()
    elif hasattr(values, "tolist"):  # numpy arrays
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise RewardError(f"{source}: expected a list of {n} numbers, got {type(values).__name__}")
    if len(values) < n:
        raise RewardError(
            f"{source}: returned {len(values)} rewards for {n} samples; none for {sample_name(batch, len(values), offset)}"
        )
    if len(values) > n:
        raise RewardError(f"{source}: returned {len(values)} rewards for {n} samples")
    for i, v in enumerate(values):
        if v is None:
            raise RewardError(f"{source}: reward missing (None) for {sample_name(batch, i, offset)}")
        if not isinstance(v, numbers.Real):
            raise RewardError(
                f"{source}: reward for {sample_name(batch, i, offset)} is {type(v).__name__} {v!r}, not a number"
            )
        if not math.isfinite(v):
            raise RewardError(f"{source}: reward for {sample_name(batch, i, offset)} is {v}")
    return torch.tensor([float(v) for v in values], dtype=torch.float32)
