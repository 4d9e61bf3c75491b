"""Padding-free packing: several samples share a row, attention never crosses samples.

Rows are filled first-fit-decreasing up to a capacity (the longest sample or `capacity`, whichever is
larger), so padding only fills the tail of a row that no remaining sample fits. `seg_ids` marks which
sample each token belongs to (-1 for padding); position ids restart at 0 for every sample, and the
model gets a block-diagonal causal mask built from `seg_ids` (models/forward.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignkit.data.samples import TokenizedSample


@dataclass
class PackedBatch:
    """Shapes `(rows, seq)`. `loss_mask[r, t] = 1` where token t of row r is a training target."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    seg_ids: torch.Tensor
    loss_mask: torch.Tensor
    n_samples: int

    def to(self, device: torch.device) -> PackedBatch:
        return PackedBatch(
            self.input_ids.to(device),
            self.position_ids.to(device),
            self.seg_ids.to(device),
            self.loss_mask.to(device),
            self.n_samples,
        )

    @property
    def n_tokens(self) -> int:
        return int((self.seg_ids >= 0).sum())


def assign_rows(lengths: list[int], capacity: int, packing: bool) -> list[list[int]]:
    """Sample indices per row: one per row without packing, first-fit-decreasing with it."""
    if not packing:
        return [[i] for i in range(len(lengths))]
    cap = max(capacity, max(lengths))
    rows: list[list[int]] = []
    space: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(space):
            if lengths[i] <= free:
                rows[r].append(i)
                space[r] -= lengths[i]
                break
        else:
            rows.append([i])
            space.append(cap - lengths[i])
    return rows


def pack(samples: list[TokenizedSample], pad_id: int, capacity: int = 0, packing: bool = True) -> PackedBatch:
    """Pack `samples` in order of `seg_ids` 0..n-1 (sample i keeps segment id i)."""
    lengths = [len(s.input_ids) for s in samples]
    rows = assign_rows(lengths, capacity, packing)
    width = max(sum(lengths[i] for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    seg = torch.full((len(rows), width), -1, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.float32)
    for r, row in enumerate(rows):
        t = 0
        for i in row:
            n = lengths[i]
            ids[r, t : t + n] = torch.tensor(samples[i].input_ids)
            pos[r, t : t + n] = torch.arange(n)
            seg[r, t : t + n] = i
            mask[r, t : t + n] = torch.tensor(samples[i].loss_mask, dtype=torch.float32)
            t += n
    # The first token of a sample has no prediction inside it, so it is never a target.
    mask[pos == 0] = 0.0
    return PackedBatch(ids, pos, seg, mask, len(samples))


def pack_rows(ids: torch.Tensor, lengths: torch.Tensor, pad_id: int, capacity: int) -> tuple[PackedBatch, torch.Tensor]:
    """Pack a right-padded `(n, L)` batch; returns the packed batch and `index` `(n, L)`: the flat
    position (into `(rows * seq)`) of each token, or -1 on padding, so `unpack` can put per-token
    results back in the `(n, L)` layout that sequence-level math (GAE, group advantages) needs."""
    lens = lengths.tolist()
    samples = [TokenizedSample(ids[i, :n].tolist(), [1] * n, "") for i, n in enumerate(lens)]
    packed = pack(samples, pad_id, capacity, packing=True)
    flat_seg = packed.seg_ids.reshape(-1)
    order = torch.argsort(flat_seg * (flat_seg.numel() + 1) + torch.arange(flat_seg.numel()), stable=True)
    first = int((flat_seg < 0).sum())  # padding sorts first (seg -1)
    index = torch.full(ids.shape, -1, dtype=torch.long)
    cols = torch.arange(ids.shape[1])
    valid = cols[None, :] < lengths[:, None]
    index[valid] = order[first:]
    return packed, index


def unpack(values: torch.Tensor, index: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """`(rows, seq)` per-token values of a packed batch -> `(n, L)` per `index` from `pack_rows`."""
    flat = values.reshape(-1)
    out = flat[index.clamp(min=0).to(flat.device)]
    return out.masked_fill(index.to(flat.device) < 0, fill)
