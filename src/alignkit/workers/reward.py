"""The reward role: scores (prompt, response, label) samples with the configured reward sources."""

from __future__ import annotations

from typing import Any

from alignkit.config.rl import RLConfig
from alignkit.rewards.base import RewardInput, RewardOutput
from alignkit.rewards.registry import build_reward
from alignkit.workers.dispatch import dispatch


class RewardWorker:
    def __init__(self, cfg: RLConfig):
        self.fn = build_reward(cfg.reward)

    @dispatch("samples")
    def score(self, prompts: list[str], responses: list[str], labels: list[Any],
              sources: list[str] | None = None) -> RewardOutput:
        """`sources[i]`: the data line of sample i's prompt, named by errors."""
        return self.fn(RewardInput(prompts, responses, labels, sources or []))
