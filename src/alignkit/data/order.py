"""The order in which training sees its data: one seeded shuffle per epoch, shared by the supervised
loop (samples) and online RL (prompts)."""

from __future__ import annotations

import random


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The sample order of an epoch: a function of (seed, epoch) only, so resume needs no saved RNG."""
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order
