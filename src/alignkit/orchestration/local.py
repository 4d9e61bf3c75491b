"""The local executor: every role is an ordinary object in this process (tests, the demo, debugging).

The controller creates roles through an executor and calls their methods; with this executor a
role is the worker itself, so a call is a plain method call. The Ray executor returns actor groups
with the same methods instead, and the controller does not change.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


class LocalExecutor:
    def create(self, role: str, cls: type[T], *args: Any) -> T:
        return cls(*args)

    def shutdown(self) -> None:
        """Nothing to stop: the roles are garbage-collected with the controller."""
