"""The local executor: every role is an ordinary object in this process (tests, the demo, debugging).

The controller creates roles through an executor and calls their methods; with this executor a
role is the worker itself, so a call is a plain method call. The Ray executor returns actor groups
with the same methods instead, and the controller does not change.
"""

from __future__ import annotations

from typing import Any, TypeVar

from alignkit.errors import AlignkitError
from alignkit.orchestration.calls import RoleCall
from alignkit.orchestration.roles import Role

T = TypeVar("T")


class LocalExecutor:
    def __init__(self, roles: dict[str, Role], rollout_sleeps: bool = False):
        """`roles`: the controller's roles. `rollout_sleeps`: the rollout engine keeps its memory between
        calls (the vLLM engine) and shares the one device with the trainers, so it frees it while they run."""
        self.roles, self._rollout_sleeps = roles, rollout_sleeps
        self.workers: dict[str, Any] = {}

    def create(self, role: str, cls: type[T], *args: Any) -> T:
        if role not in self.roles:
            raise AlignkitError(f"the executor was given no '{role}' role (it has {', '.join(self.roles)})")
        worker = cls(*args)
        self.workers[role] = worker
        return worker

    def ready(self) -> None:
        """Every role is built as it is created."""

    def rollout_sleeps(self) -> bool:
        return self._rollout_sleeps

    def sync_weights(self) -> None:
        """The policy's current weights into the rollout engine: an iterator over the same process's
        tensors, copied by the engine as it reads them."""
        self.workers["rollout"].load_weights(self.workers["policy"].weights())

    def run(self, calls: list[RoleCall]) -> list[Any]:
        """Independent calls, one after the other in the order given."""
        return [c() for c in calls]

    def shutdown(self) -> None:
        """Nothing to stop: the roles are garbage-collected with the controller."""
