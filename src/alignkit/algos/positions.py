"""Where a target token sits in its response, and the position buckets metrics are broken down by.

Bucket b holds response positions [2^(b-1), 2^b) (bucket 0 the first token, bucket 1 the second), and
the last bucket everything from 2^(N_BUCKETS-2) on: fine where a distillation signal changes fastest (the
first tokens), coarse further out.
"""

from __future__ import annotations

import torch
from torch import Tensor

N_BUCKETS = 11


def response_positions(seg_ids: Tensor, positions: Tensor) -> Tensor:
    """`(n,)`: each target token's position counted from the first target of its sample (0 = the first
    response token; in a multi-turn sample, later turns count the tokens in between too). seg_ids,
    positions `(n,)`: the sample and the sequence position of each target, in any order."""
    if seg_ids.numel() == 0:
        return positions.clone()
    first = torch.full((int(seg_ids.max()) + 1,), torch.iinfo(positions.dtype).max, dtype=positions.dtype,
                       device=positions.device)
    first = first.scatter_reduce(0, seg_ids, positions, reduce="amin")
    return positions - first[seg_ids]


def position_bucket(pos: Tensor) -> Tensor:
    """`pos` (any shape, >= 0) -> bucket index: 0 for position 0, else floor(log2(pos)) + 1, capped at
    N_BUCKETS - 1."""
    b = torch.log2(pos.clamp(min=1).double()).floor().long() + 1
    return torch.where(pos == 0, 0, b).clamp(max=N_BUCKETS - 1)


def bucket_name(b: int) -> str:
    """The label of bucket b in metric names: 0, 1, 2-3, 4-7, ..., 512+."""
    if b <= 1:
        return str(b)
    if b == N_BUCKETS - 1:
        return f"{2 ** (b - 1)}+"
    return f"{2 ** (b - 1)}-{2 ** b - 1}"


def bucket_counts(pos: Tensor) -> Tensor:
    """`(N_BUCKETS,)` float: how many of the positions `pos` `(n,)` fall in each bucket."""
    return torch.bincount(position_bucket(pos), minlength=N_BUCKETS).double()
