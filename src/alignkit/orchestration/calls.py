"""Calls on roles that do not depend on each other (the policy's, the reference's and the critic's
forward passes over one batch): an executor may run them at the same time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RoleCall:
    role: Any  # a worker (local) or a role group (ray)
    method: str
    args: tuple = ()

    def __call__(self) -> Any:
        return getattr(self.role, self.method)(*self.args)
