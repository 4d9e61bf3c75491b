"""Running a model over the rows of an Experience: pack, forward, unpack to `(n, L)`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from alignkit.data.packing import PackedBatch, pack_rows, unpack
from alignkit.workers.experience import Experience


def micro_batches(exp: Experience, micro: int) -> Iterator[Experience]:
    for i in range(0, exp.n, micro):
        yield exp.select(torch.arange(i, min(i + micro, exp.n)))


def per_token(exp: Experience, fn: Callable[[PackedBatch], Any], pad_id: int, device: torch.device) -> Any:
    """`fn(packed)` -> a `(rows, seq)` tensor, or a tuple of them (None passes through), each returned
    in the `(n, L)` layout of `exp`: the one pack -> forward -> unpack of the RL workers.

    The rows of `exp` are packed into rows as wide as its longest sequence (pack width 0), so padding
    is bounded by the spread of lengths. Rows as wide as the config's limits (prompt + full response)
    were mostly one sequence padded to the width of a two-sequence row: 1.65 token slots per real
    token in bench/bench_grpo.py."""
    packed, index = pack_rows(exp.input_ids, exp.lengths, pad_id, 0)
    out = fn(packed.to(device))
    if isinstance(out, tuple):
        return tuple(None if t is None else unpack(t, index) for t in out)
    return unpack(out, index)


def gather(exp: Experience, fn: Callable[[Experience], torch.Tensor], micro: int) -> torch.Tensor:
    """Apply `fn` per micro-batch and stitch the `(m, width)` results into `(n, L)`."""
    out = torch.zeros(exp.input_ids.shape, dtype=torch.float32)
    for i, mb in enumerate(micro_batches(exp, micro)):
        v = fn(mb).float().cpu()
        out[i * micro : i * micro + mb.n, : v.shape[1]] = v
    return out
