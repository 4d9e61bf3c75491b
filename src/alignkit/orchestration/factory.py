"""Executor selection: `--executor local` (one process) or `--executor ray` (Ray actor groups)."""

from __future__ import annotations

from typing import Any

from alignkit.config.rl import RLConfig
from alignkit.orchestration.local import LocalExecutor


def build_executor(cfg: RLConfig) -> Any:
    if cfg.executor == "ray":
        from alignkit.orchestration.ray.executor import RayExecutor  # Ray is imported only when asked for

        return RayExecutor(cfg)
    # The vLLM engine holds its GPU memory between calls; the HF engine frees its KV cache by itself.
    return LocalExecutor(sleeping_rollout=cfg.rollout.engine == "vllm")
