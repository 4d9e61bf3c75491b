"""A colocated rollout on GPUs (hybrid engine): the engine gives its GPU memory back while the
trainers that share its devices run, and takes it again to receive new weights and generate.

Both executors use it: the local one with the vLLM engine (everything on one GPU), the Ray one when
roles are colocated on GPUs. `rollout` is a RolloutWorker or a Ray role group. On CPUs there is
nothing to give back, so the plain rollout is used there."""

from __future__ import annotations

from typing import Any


class SleepingRollout:
    def __init__(self, rollout: Any):
        self.group = rollout

    def generate(self, prompts: list[list[int]], params: Any) -> Any:
        out = self.group.generate(prompts, params)
        self.group.sleep()
        return out

    def load_weights(self, weights: Any) -> None:
        self.group.wake_up()
        self.group.load_weights(weights)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.group, name)
