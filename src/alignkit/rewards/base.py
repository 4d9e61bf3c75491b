"""The reward protocol: a reward function scores a batch of (prompt, response, label) samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class RewardInput:
    """A batch of samples to score; `labels[i]` is the reference answer (None when the data has none);
    `sources[i]`, where known, the data line of the sample's prompt (`data/prompts.jsonl:17`), for errors."""

    prompts: list[str]
    responses: list[str]
    labels: list[Any] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RewardOutput:
    """`scores`: `(batch,)` float32, the combined reward. `components`: each named part, `(batch,)`,
    logged as `reward/<name>`."""

    scores: torch.Tensor
    components: dict[str, torch.Tensor] = field(default_factory=dict)


class RewardFn(Protocol):
    def __call__(self, batch: RewardInput) -> RewardOutput: ...
