"""The local executor: every role is an ordinary object in this process (tests, the demo, debugging).

The controller creates roles through an executor and calls their methods; with this executor a
role is the worker itself, so a call is a plain method call. The Ray executor returns actor groups
with the same methods instead, and the controller does not change.
"""

from __future__ import annotations

from typing import Any, TypeVar

from alignkit.orchestration.calls import Call
from alignkit.orchestration.colocate import SleepingRollout

T = TypeVar("T")


class LocalExecutor:
    def __init__(self, sleeping_rollout: bool = False):
        """`sleeping_rollout`: the rollout engine shares the GPU with the trainers (the vLLM engine),
        so it frees its memory while they run."""
        self.sleeping_rollout = sleeping_rollout

    def create(self, role: str, cls: type[T], *args: Any) -> T:
        worker = cls(*args)
        if role == "rollout" and self.sleeping_rollout:
            return SleepingRollout(worker)  # type: ignore[return-value]
        return worker

    def ready(self) -> None:
        """Every role is built as it is created."""

    def run(self, calls: list[Call]) -> list[Any]:
        """Independent calls, one after the other in the order given."""
        return [c() for c in calls]

    def shutdown(self) -> None:
        """Nothing to stop: the roles are garbage-collected with the controller."""
