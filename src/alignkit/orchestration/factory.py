"""Executor selection: `--executor local` (one process) or `--executor ray` (Ray actor groups)."""

from __future__ import annotations

from typing import Any

from alignkit.config.schema import RunConfig
from alignkit.orchestration.local import LocalExecutor


def build_executor(cfg: RunConfig) -> Any:
    if cfg.executor == "ray":
        from alignkit.orchestration.ray.executor import RayExecutor  # Ray is imported only when asked for

        return RayExecutor(cfg)
    return LocalExecutor()
