"""How the loop's step is cut into micro-batches, and how the workers of a data-parallel supervised run
split them.

Micro-batches are formed on the whole step (or eval) batch, the same on every worker: `micro` samples
each in order, or with a token budget groups of at most that many tokens, first-fit-decreasing by length
(data/packing.py `first_fit_decreasing`; a sample is the unit the objective never splits: a preference
pair, a KTO sample with its mismatched twin). Every worker walks the same micro-batches, in the same
order, and runs its share of each: every world-th item. Losses keep the WHOLE step's denominator, so the
workers' summed gradients and metrics are those of one process on the whole micro-batch, and the
step's gradient does not depend on how the step is cut (but for KTO's reference point, a statistic of
each micro-batch).

A worker can have nothing of a micro-batch (fewer items than workers, or a short last micro-batch of
eval data). It still runs a stand-in, because the forward and backward of a sharded model are
collective (FSDP gathers the weights in every forward): the micro-batch's first item under a loss
divided by an infinite denominator, which adds zero to the loss, the gradients and the metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from alignkit.backends.distributed import rank, world_size
from alignkit.data.packing import first_fit_decreasing

S = TypeVar("S")

STAND_IN = math.inf
"""The denominator of a stand-in's loss (`Objective.loss_fn(STAND_IN)`): its loss and metrics are 0."""


def micro_batches(samples: Sequence[S], micro: int, tokens: int = 0,
                  length: Callable[[S], int] | None = None) -> list[Sequence[S]]:
    """The micro-batches of `samples`: `micro` each in order, or with `tokens` > 0 (which wins) groups of
    at most `tokens` by `length(sample)` (a longer sample alone), first-fit-decreasing."""
    if tokens:
        return [[samples[i] for i in g] for g in first_fit_decreasing([length(s) for s in samples], tokens)]
    return [samples[start : start + micro] for start in range(0, len(samples), micro)]


def shares(samples: Sequence[S], micro: int, tokens: int = 0,
           length: Callable[[S], int] | None = None) -> Iterator[tuple[Sequence[S], bool]]:
    """This worker's share of each micro-batch of `samples` (`micro_batches`), and whether it is real
    (False: a stand-in, whose loss must use the denominator `STAND_IN` and whose results are dropped).
    Every worker gets as many shares as the others, so they make the same collective calls."""
    r, w = rank(), world_size()
    for part in micro_batches(samples, micro, tokens, length):
        mine = part[r::w]
        yield (mine, True) if mine else (part[:1], False)
