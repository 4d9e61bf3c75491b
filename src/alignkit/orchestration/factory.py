"""Executor selection: `--executor local` (one process) or `--executor ray` (Ray actor groups)."""

from __future__ import annotations

from typing import Any

from alignkit.config.rl import RLConfig
from alignkit.orchestration.local import LocalExecutor
from alignkit.orchestration.roles import Role
from alignkit.rollout.engines import ENGINES


def build_executor(cfg: RLConfig, roles: dict[str, Role]) -> Any:
    """The executor of `cfg` for the controller's `roles`."""
    if cfg.executor == "ray":
        from alignkit.orchestration.ray.executor import RayExecutor  # Ray is imported only when asked for

        return RayExecutor(cfg, roles)
    # Everything shares one device: an engine that holds its memory between calls gives it back.
    return LocalExecutor(roles, rollout_sleeps=ENGINES[cfg.rollout.engine].holds_memory)
