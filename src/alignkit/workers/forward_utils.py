"""Running a model over the rows of an Experience: micro-batches, pack, forward, unpack to `(n, L)`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from alignkit.backends.distributed import gather_values
from alignkit.config.schema import TrainConfig
from alignkit.data.packing import PackedBatch, first_fit_decreasing, pack_rows, unpack
from alignkit.workers.experience import Experience


def row_groups(exp: Experience, train: TrainConfig) -> list[torch.Tensor]:
    """Row indices of each micro-batch of `exp`: `micro_batch_size` rows in order, or with
    `micro_batch_tokens` groups of at most that many tokens (prompt + response; a longer row alone),
    first-fit-decreasing by length. Token groups depend on this worker's rows, so in a process group (a
    sharded role, whose every forward is collective) every worker takes the most groups any worker
    has (collective), the missing ones empty."""
    if not train.micro_batch_tokens:
        m = train.micro_batch_size
        return [torch.arange(i, min(i + m, exp.n)) for i in range(0, exp.n, m)]
    bins = first_fit_decreasing(exp.lengths.tolist(), train.micro_batch_tokens)
    groups = [torch.tensor(g, dtype=torch.long) for g in bins]
    most = int(gather_values(torch.tensor([len(groups)])).max())
    return groups + [torch.zeros(0, dtype=torch.long)] * (most - len(groups))


def micro_batches(exp: Experience, train: TrainConfig) -> Iterator[tuple[torch.Tensor, Experience]]:
    """(row indices, rows) of each micro-batch (`row_groups`); an empty group is a stand-in: one blank
    row (`Experience.blank`), which adds nothing to a loss or a metric."""
    for idx in row_groups(exp, train):
        yield idx, exp.select(idx) if len(idx) else exp.blank()


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


def gather(exp: Experience, fn: Callable[[Experience], torch.Tensor], train: TrainConfig) -> torch.Tensor:
    """Apply `fn` per micro-batch and put the `(m, width)` results back into `(n, L)` (a stand-in's
    forward runs, its result is dropped)."""
    out = torch.zeros(exp.input_ids.shape, dtype=torch.float32)
    for idx, mb in micro_batches(exp, train):
        v = fn(mb).float().cpu()
        if len(idx):
            out[idx, : v.shape[1]] = v
    return out
