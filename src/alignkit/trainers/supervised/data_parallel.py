"""How the workers of a data-parallel supervised run split the loop's micro-batches.

Every worker walks the same micro-batches, in the same order, and runs its share of each: every
world-th item, so that what belongs together stays together (a preference pair, a KTO sample with its
mismatched twin). Losses keep the WHOLE step's denominator, so the workers' summed gradients and
metrics are those of one process on the whole micro-batch.

A worker can have nothing of a micro-batch (fewer items than workers, or a short last micro-batch of
eval data). It still runs a stand-in, because the forward and backward of a sharded model are
collective (FSDP gathers the weights in every forward): the micro-batch's first item under a loss
divided by an infinite denominator, which adds zero to the loss, the gradients and the metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TypeVar

from alignkit.backends.distributed import rank, world_size

S = TypeVar("S")

STAND_IN = math.inf
"""The denominator of a stand-in's loss (`Objective.loss_fn(STAND_IN)`): its loss and metrics are 0."""


def shares(samples: Sequence[S], micro: int) -> Iterator[tuple[Sequence[S], bool]]:
    """This worker's share of each micro-batch of `samples` (`micro` items each), and whether it is real
    (False: a stand-in, whose loss must use the denominator `STAND_IN` and whose results are dropped).
    Every worker gets as many shares as the others, so they make the same collective calls."""
    r, w = rank(), world_size()
    for start in range(0, len(samples), micro):
        part = samples[start : start + micro]
        mine = part[r::w]
        yield (mine, True) if mine else (part[:1], False)
