"""A weighted sum of named reward sources: `reward = sum_s weight_s * reward_s`, optionally clipped.

Components (logged as `reward/<name>`): each source's unweighted reward under its name, and each part
a source reports under `<source>/<part>`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignkit.algos.shaping import clip_rewards
from alignkit.errors import ConfigError
from alignkit.rewards.base import RewardFn, RewardInput, RewardOutput
from alignkit.rewards.validate import check_scores, labels_of


@dataclass(frozen=True)
class Source:
    name: str
    fn: RewardFn
    weight: float = 1.0


@dataclass(frozen=True)
class WeightedSum:
    """The `RewardFn` combining `sources`; scores and components `(batch,)` float32."""

    sources: list[Source]
    clip: float | None = None

    def __post_init__(self) -> None:
        names = [s.name for s in self.sources]
        if not names:
            raise ConfigError(
                "no reward source: set --reward.function, --reward.rules, --reward.model_path or --reward.urls"
            )
        if len(set(names)) != len(names):
            raise ConfigError(f"reward source names must differ, got {names}")

    def __call__(self, batch: RewardInput) -> RewardOutput:
        total = torch.zeros(len(labels_of(batch)))
        components: dict[str, torch.Tensor] = {}
        for s in self.sources:
            out = s.fn(batch)
            # Checked again here so that any RewardFn, not only the built-in ones, gets the guarantee.
            scores = check_scores(out.scores, batch, f"reward source '{s.name}'")
            components[s.name] = scores
            components.update({f"{s.name}/{k}": v for k, v in out.components.items()})
            total = total + s.weight * scores
        if self.clip is not None:
            total = clip_rewards(total, -self.clip, self.clip)
        return RewardOutput(total, components)
