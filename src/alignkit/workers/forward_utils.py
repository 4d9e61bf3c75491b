"""Running a model over the rows of an Experience: pack, forward, unpack to `(n, L)`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from alignkit.data.packing import PackedBatch, pack_rows, unpack
from alignkit.workers.experience import Experience


def micro_batches(exp: Experience, micro: int) -> Iterator[Experience]:
    for i in range(0, exp.n, micro):
        yield exp.select(torch.arange(i, min(i + micro, exp.n)))


def per_token(
    exp: Experience, fn: Callable[[PackedBatch], torch.Tensor], pad_id: int, capacity: int, device: torch.device
) -> torch.Tensor:
    """`fn(packed)` -> `(rows, seq)` per-token values, returned in the `(n, L)` layout of `exp`."""
    packed, index = pack_rows(exp.input_ids, exp.lengths, pad_id, capacity)
    return unpack(fn(packed.to(device)), index)


def gather(exp: Experience, fn: Callable[[Experience], torch.Tensor], micro: int) -> torch.Tensor:
    """Apply `fn` per micro-batch and stitch the `(m, width)` results into `(n, L)`."""
    out = torch.zeros(exp.input_ids.shape, dtype=torch.float32)
    for i, mb in enumerate(micro_batches(exp, micro)):
        v = fn(mb).float().cpu()
        out[i * micro : i * micro + mb.n, : v.shape[1]] = v
    return out
