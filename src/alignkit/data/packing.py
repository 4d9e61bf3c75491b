"""Padding-free packing: several samples share a row, attention never crosses samples.

Rows are filled first-fit-decreasing up to a capacity (the longest unit or `capacity`, whichever is
larger), so padding only fills the tail of a row that no remaining unit fits. `seg_ids` marks which
segment each token belongs to (-1 for padding); position ids restart at 0 for every sample, and the
model gets a block-diagonal causal mask built from `seg_ids` (models/forward.py).

Samples that begin with the same prompt (the two sides of a preference pair) can share it: the unit
is `[prompt, rest of sample a, rest of sample b, ...]`, each rest continuing the prompt's position
ids and attending to the prompt and to itself only, and the prompt's tokens go through the model
once. The prompt is a segment of its own (ids after the samples'), named in `parent` by each sample
that continues it; a sample's first own token is then predicted from the prompt's last token, which
`models/forward.py` reads from `parent`. A forward over such a batch equals the forwards of the
samples alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from alignkit.data.samples import TokenizedPair, TokenizedSample


@dataclass
class PackedBatch:
    """Shapes `(rows, seq)`. `loss_mask[r, t] = 1` where token t of row r is a training target.
    Samples are segments `0..n_samples-1`; shared prompts, if any, are segments from `n_samples` on,
    and `parent[s]` is the prompt segment sample `s` continues (-1: none). `parent` is None when
    nothing is shared."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    seg_ids: torch.Tensor
    loss_mask: torch.Tensor
    n_samples: int
    parent: torch.Tensor | None = None

    def to(self, device: torch.device) -> PackedBatch:
        return PackedBatch(
            self.input_ids.to(device),
            self.position_ids.to(device),
            self.seg_ids.to(device),
            self.loss_mask.to(device),
            self.n_samples,
            None if self.parent is None else self.parent.to(device),
        )

    @property
    def n_tokens(self) -> int:
        return int((self.seg_ids >= 0).sum())


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices `0..len(lengths)-1` in bins of at most `capacity` total length: longest first (ties in
    index order), each into the first bin it fits, else a new one; an item longer than `capacity` gets a
    bin of its own. Bins are in the order they were opened, items in the order they were placed. A pure
    function of (lengths, capacity): the same on every worker and on resume."""
    bins: list[list[int]] = []
    space: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for b, free in enumerate(space):
            if lengths[i] <= free:
                bins[b].append(i)
                space[b] -= lengths[i]
                break
        else:
            bins.append([i])
            space.append(max(capacity - lengths[i], 0))
    return bins


def assign_rows(lengths: list[int], capacity: int, packing: bool) -> list[list[int]]:
    """Sample indices per row: one per row without packing, first-fit-decreasing with it."""
    if not packing:
        return [[i] for i in range(len(lengths))]
    return first_fit_decreasing(lengths, max(capacity, max(lengths)))


def shared_prefix_len(samples: list[TokenizedSample]) -> int:
    """Tokens the samples can share: their common prefix, up to the first training target of any of
    them (a target's log-prob needs its own row position), and 0 for a single sample."""
    if len(samples) < 2:
        return 0
    n = min(len(s.input_ids) for s in samples)
    for s in samples:
        n = min(n, next((t for t, m in enumerate(s.loss_mask) if m), n))
    first = samples[0].input_ids
    for t in range(n):
        if any(s.input_ids[t] != first[t] for s in samples[1:]):
            return t
    return n


def pack(samples: list[TokenizedSample], pad_id: int, capacity: int = 0, packing: bool = True,
         groups: list[list[int]] | None = None) -> PackedBatch:
    """Pack `samples`; sample i keeps segment id i. `groups` (lists of sample indices, covering each
    sample once) share their common prompt (`shared_prefix_len`); None packs every sample alone."""
    groups = groups if groups is not None else [[i] for i in range(len(samples))]
    shared = [shared_prefix_len([samples[i] for i in g]) for g in groups]
    lengths = [len(s.input_ids) for s in samples]
    units = [p + sum(lengths[i] - p for i in g) for g, p in zip(groups, shared, strict=True)]
    rows = assign_rows(units, capacity, packing)
    width = max(sum(units[u] for u in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    seg = torch.full((len(rows), width), -1, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.float32)
    parent = torch.full((len(samples) + len(groups),), -1, dtype=torch.long)

    def put(r: int, t: int, s: TokenizedSample, start: int, seg_id: int, end: int | None = None) -> int:
        part = slice(start, end)
        n = len(s.input_ids[part])
        ids[r, t : t + n] = torch.tensor(s.input_ids[part])
        pos[r, t : t + n] = torch.arange(start, start + n)
        seg[r, t : t + n] = seg_id
        mask[r, t : t + n] = torch.tensor(s.loss_mask[part], dtype=torch.float32)
        return t + n

    for r, row in enumerate(rows):
        t = 0
        for u in row:
            p = shared[u]
            if p:  # the prompt once, as segment n_samples + u, with no targets
                t = put(r, t, samples[groups[u][0]], 0, len(samples) + u, p)
                parent[groups[u]] = len(samples) + u
            for i in groups[u]:
                t = put(r, t, samples[i], p, i)
    # The first token of a sample has no prediction inside it, so it is never a target.
    mask[pos == 0] = 0.0
    return PackedBatch(ids, pos, seg, mask, len(samples), parent if any(shared) else None)


@dataclass(frozen=True)
class PairPacker:
    """Packs pairs as samples chosen 0..n-1, rejected n..2n-1, each pair's prompt shared if `share`."""

    pad_id: int
    capacity: int
    packing: bool
    share: bool
    device: torch.device

    def __call__(self, pairs: Sequence[TokenizedPair]) -> PackedBatch:
        n = len(pairs)
        groups = [[i, n + i] for i in range(n)] if self.share else None
        samples = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        return pack(samples, self.pad_id, self.capacity, self.packing, groups).to(self.device)


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
