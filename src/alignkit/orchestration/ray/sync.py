"""Weight sync from the training group to the rollout workers through Ray's object store.

The trainer's first worker copies its full weights (LoRA merged) into flat byte buffers of about
`BUCKET_BYTES` each as the tensors arrive, puts each buffer in the object store (`ray.put`) and hands
back only the refs. Every rollout worker fetches the buckets one by one and loads them: a numpy
buffer in the store is mapped, not copied, into each process on its node, so a weight is copied
once into the store and once into the engine, and no process holds more than a bucket extra.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

BUCKET_BYTES = 256 << 20
_ALIGN = 64  # every tensor starts at a multiple of this, so a dtype view of the bytes is legal


@dataclass(frozen=True)
class Slot:
    """Where one tensor lies in a bucket."""

    name: str
    dtype: str  # torch dtype name, e.g. "bfloat16" (numpy has none: the bytes travel as uint8)
    shape: tuple[int, ...]
    offset: int  # bytes into the bucket


@dataclass(frozen=True)
class Bucket:
    """What one `ray.put` holds: a flat byte buffer and the tensors in it."""

    slots: list[Slot]
    data: np.ndarray  # (bytes,) uint8


@dataclass(frozen=True)
class WeightRefs:
    """One version of the full weights in the object store: what a Ray policy group's `weights()`
    returns and a Ray rollout group's `load_weights` takes."""

    refs: list[Any] = field(default_factory=list)  # ObjectRef[Bucket], in order
    nbytes: int = 0


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _view(data: torch.Tensor, slot: Slot) -> torch.Tensor:
    dtype = getattr(torch, slot.dtype)
    n = int(np.prod(slot.shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
    return data[slot.offset : slot.offset + n].view(dtype).view(slot.shape)


def pack(named: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int = BUCKET_BYTES) -> Iterator[Bucket]:
    """Copy each tensor into the current bucket as it arrives (the LoRA-merged weights of
    `full_weights` are only valid until the next one is asked for); a bucket is yielded once the
    next tensor would not fit. A tensor larger than `bucket_bytes` gets a bucket of its own."""
    buf: np.ndarray | None = None
    slots: list[Slot] = []
    used = 0
    for name, t in named:
        size = _aligned(_nbytes(t))
        if buf is not None and used + size > len(buf):
            yield Bucket(slots, buf[:used])
            buf, slots, used = None, [], 0
        if buf is None:
            buf = np.empty(max(bucket_bytes, size), dtype=np.uint8)  # pages are touched only as filled
        slot = Slot(name, str(t.dtype).removeprefix("torch."), tuple(t.shape), used)
        _view(torch.from_numpy(buf), slot).copy_(t.detach())
        slots.append(slot)
        used += size
    if buf is not None:
        yield Bucket(slots, buf[:used])


def unpack(bucket: Bucket) -> Iterator[tuple[str, torch.Tensor]]:
    """Tensors viewing the bucket's bytes (read-only when they live in the object store: load them
    with a copy, as every engine's `load_weights` does)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        data = torch.from_numpy(bucket.data)
    for slot in bucket.slots:
        yield slot.name, _view(data, slot)


def publish(named: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int = BUCKET_BYTES) -> WeightRefs:
    """Put the weights in the object store, bucket by bucket; the caller's process owns the objects."""
    import ray

    refs, nbytes = [], 0
    for bucket in pack(named, bucket_bytes):
        refs.append(ray.put(bucket))
        nbytes += len(bucket.data)
    return WeightRefs(refs, nbytes)


def receive(weights: WeightRefs, timeout_s: float) -> Iterator[tuple[str, torch.Tensor]]:
    """The published weights, fetched one bucket at a time (each released once consumed)."""
    import ray

    for ref in weights.refs:
        yield from unpack(ray.get(ref, timeout=timeout_s))
