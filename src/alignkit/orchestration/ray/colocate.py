"""A colocated rollout on GPUs (hybrid engine): the engine gives its GPU memory back while the
trainers that share its devices run, and takes it again to receive new weights and generate.

On CPUs there is nothing to give back, so the executor uses the plain group there."""

from __future__ import annotations

from typing import Any

from alignkit.orchestration.ray.group import RoleGroup


class SleepingRollout:
    def __init__(self, group: RoleGroup):
        self.group = group

    def generate(self, prompts: list[list[int]], params: Any) -> Any:
        out = self.group.generate(prompts, params)
        self.group.sleep()
        return out

    def load_weights(self, weights: Any) -> None:
        self.group.wake_up()
        self.group.load_weights(weights)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.group, name)
