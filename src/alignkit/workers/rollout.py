"""The rollout role: a generation engine holding its own copy of the policy weights."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from alignkit.config.rl import RLConfig
from alignkit.config.sampling import SamplingParams
from alignkit.rollout.base import Generation
from alignkit.rollout.engines import build_engine
from alignkit.workers.dispatch import dispatch


class RolloutWorker:
    def __init__(self, cfg: RLConfig, sleeps: bool = False):
        """`sleeps`: the engine shares its device with the trainers (a colocated rollout on a GPU, the
        hybrid engine), so it gives its memory back after generating and takes it again to receive new
        weights (the executor says whether: `Executor.rollout_sleeps`)."""
        self.engine = build_engine(cfg.model, cfg.rollout, cfg.train.device)
        self.sleeps = sleeps

    @dispatch("prompts")
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        out = self.engine.generate(prompts, params)
        if self.sleeps:
            self.engine.sleep()
        return out

    @dispatch("all")
    def wake_up(self) -> None:
        """Take the engine's memory back before new weights arrive (a no-op when it is awake)."""
        self.engine.wake_up()

    def load_weights(self, named: Iterable[tuple[str, torch.Tensor]]) -> None:
        self.wake_up()
        self.engine.load_weights(named)
