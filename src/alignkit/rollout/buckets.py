"""Named tensors packed into flat byte buckets: how every weight transport (Ray's object store, NCCL
broadcast, CUDA IPC) moves the trainer's weights to a rollout engine.

One call per bucket instead of one per tensor: a model has hundreds of tensors, and each call of a
transport (a `ray.put`, an NCCL broadcast, an IPC handle) has a fixed cost. The buffer is any flat
uint8 tensor (numpy-backed for the object store, on the GPU for NCCL and IPC), so the layout is
shared and only the allocation differs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

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


# (bytes, device of the tensor that opens the bucket) -> a flat uint8 tensor of at least that many bytes
Alloc = Callable[[int, torch.device], torch.Tensor]


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def view(data: torch.Tensor, slot: Slot) -> torch.Tensor:
    """The tensor of `slot` as a view of the bucket's bytes `data`."""
    dtype = getattr(torch, slot.dtype)
    n = torch.Size(slot.shape).numel() * torch.empty((), dtype=dtype).element_size()
    return data[slot.offset : slot.offset + n].view(dtype).view(slot.shape)


def pack_buckets(
    named: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int, alloc: Alloc
) -> Iterator[tuple[list[Slot], torch.Tensor]]:
    """(slots, bytes) per bucket. Each tensor is copied into the current bucket as it arrives (the
    LoRA-merged weights of `full_weights` are only valid until the next one is asked for); a bucket
    is yielded once the next tensor would not fit, and is the caller's until it asks for the next.
    A tensor larger than `bucket_bytes` gets a bucket of its own."""
    buf: torch.Tensor | None = None
    slots: list[Slot] = []
    used = 0
    for name, t in named:
        size = _aligned(_nbytes(t))
        if buf is not None and used + size > len(buf):
            yield slots, buf[:used]
            buf, slots, used = None, [], 0
        if buf is None:
            buf = alloc(max(bucket_bytes, size), t.device)
        slot = Slot(name, str(t.dtype).removeprefix("torch."), tuple(t.shape), used)
        view(buf, slot).copy_(t.detach())
        slots.append(slot)
        used += size
    if buf is not None:
        yield slots, buf[:used]


def unpack_bucket(slots: list[Slot], data: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    """The bucket's tensors as views of `data` (load them with a copy: the bytes are reused)."""
    for slot in slots:
        yield slot.name, view(data, slot)
