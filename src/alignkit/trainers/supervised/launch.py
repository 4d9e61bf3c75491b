"""Where a supervised command (sft, rm, dpo, kto) runs: in this process; data parallel on
`--policy.num_workers` Ray actors (`--executor ray`, orchestration/ray/spmd.py); or in each of the
processes torchrun started. Every worker runs the same trainer function; in a process group it reads
its rank from the group (trainers/supervised/loop.py), and nothing else in it knows how it was launched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist

from alignkit.backends.distributed import require_process_group, world_size
from alignkit.config.schema import RunConfig
from alignkit.config.validate import validate_executor, validate_run
from alignkit.errors import ConfigError
from alignkit.models.load import resolve_device
from alignkit.runtime.lock import run_lock
from alignkit.runtime.signals import graceful_stop

C = TypeVar("C", bound=RunConfig)


def launch(cfg: C, train: Callable[[C], dict[str, float]]) -> dict[str, float]:
    """`train(cfg)` on the workers `cfg` asks for; the run's last metrics (the same on every worker)."""
    validate_run(cfg)
    validate_executor(cfg)
    if cfg.executor == "ray":
        from alignkit.orchestration.ray.spmd import run_spmd  # Ray is imported only when asked for

        with run_lock(cfg.output_dir):  # held by this process, the one the user signals (runtime/)
            return run_spmd(cfg, train)
    joined = join_torchrun_group(resolve_device(cfg.train.device))
    try:
        check_local_workers(cfg)
        with run_lock(cfg.output_dir), graceful_stop(cfg.output_dir):
            return train(cfg)
    finally:
        if joined:
            dist.destroy_process_group()


def join_torchrun_group(device: torch.device) -> bool:
    """In a process torchrun started (RANK and WORLD_SIZE set), join its group: NCCL on the GPU of the
    process's LOCAL_RANK, gloo on CPU, the rendezvous torchrun's environment names. True if it joined."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def check_local_workers(cfg: RunConfig) -> None:
    """Without Ray: a sharded backend needs a process group (torchrun's), the torch backend one process."""
    p = cfg.policy
    if p.sharded:
        require_process_group(p.backend)
    elif world_size() > 1:
        raise ConfigError(f"torchrun started {world_size()} processes, but --policy.backend torch trains one copy: "
                          "use --policy.backend fsdp2 or deepspeed")
    elif p.num_workers > 1:
        raise ConfigError(f"--policy.num_workers {p.num_workers} needs --executor ray and a sharded backend "
                          "(--policy.backend fsdp2 or deepspeed)")
