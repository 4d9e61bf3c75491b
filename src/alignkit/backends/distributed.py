"""What the sharded backends and the data-parallel trainers share: the process group they run in, how
the per-worker metrics of a data-parallel step add up, and the few values the workers exchange.

The group is started by whoever launches the workers (`--executor ray` starts one actor per worker and
calls `torch.distributed.init_process_group` in each, gloo on CPU and NCCL on GPU, with a timeout;
torchrun's processes join theirs in trainers/supervised/launch.py); the backends only use it, so every collective
here is bounded by that group's timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from alignkit.errors import AlignkitError


def require_process_group(backend: str) -> None:
    """Fail with a clear message when a sharded backend is built outside a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        raise AlignkitError(
            f"--policy.backend {backend} runs one process per worker in a torch.distributed process group: "
            "use --executor ray (or launch the processes with torchrun), or --policy.backend torch"
        )


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def all_reduce_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Sum each metric over the workers of the group; every worker gets the sums.

    `forward_backward` returns per-worker partial sums (each worker's loss is its micro-batches' share
    of a loss already divided by the step's global denominator), so the step's value is the sum. A key
    missing on some worker counts as 0 there. Collective: every worker must call it, once per step."""
    if world_size() == 1:
        return dict(metrics)
    gathered: list[dict[str, float] | None] = [None] * world_size()
    dist.all_gather_object(gathered, metrics)
    total: dict[str, float] = {}
    for part in gathered:
        add_metrics(total, part or {})
    return total


def add_metrics(total: dict[str, float], metrics: dict[str, float]) -> None:
    """Add `metrics` into `total` key by key (a key `total` lacks counts as 0 there)."""
    for k, v in metrics.items():
        total[k] = total.get(k, 0.0) + v


def from_rank0(obj: Any) -> Any:
    """Rank 0's `obj` on every worker (collective): one decision for the group, such as the checkpoint to
    resume from. `obj` itself outside a process group."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


T = TypeVar("T")


def on_rank0(fn: Callable[[], T]) -> T:
    """`fn()` run by rank 0 alone; its result, or the AlignkitError it raised, on every worker (collective),
    so that a refusal decided on rank 0 (a damaged checkpoint, a busy run directory) stops every worker
    instead of leaving them waiting for it."""
    if world_size() == 1:
        return fn()
    out: tuple[Any, AlignkitError | None] = (None, None)
    if rank() == 0:
        try:
            out = (fn(), None)
        except AlignkitError as e:
            out = (None, e)
    result, error = from_rank0(out)
    if error is not None:
        raise error
    return result


def first_signal(signum: int | None) -> int | None:
    """The first worker's non-None `signum` (collective): every worker stops at the same step, whichever
    of them was signalled. `signum` itself outside a process group."""
    if world_size() == 1:
        return signum
    gathered: list[int | None] = [None] * world_size()
    dist.all_gather_object(gathered, signum)
    return next((s for s in gathered if s is not None), None)


def gather_values(values: torch.Tensor, include: bool = True) -> torch.Tensor:
    """The 1-d `values` of every worker, concatenated in rank order, on `values`' device (collective); a
    worker with `include=False` adds none. For statistics of a data-parallel micro-batch that must not
    depend on how it is split (KTO's reference point, a reward model's score mean)."""
    if world_size() == 1:
        return values if include else values[:0]
    gathered: list[list[float] | None] = [None] * world_size()
    dist.all_gather_object(gathered, values.tolist() if include else [])
    return torch.tensor([v for part in gathered for v in part or []], dtype=values.dtype, device=values.device)
