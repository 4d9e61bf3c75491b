"""How a worker method's call is spread over the workers of a role, declared on the method.

An executor that runs a role as several workers (orchestration/ray/) reads the declaration to split a
call's arguments and gather the results into the one result a single local worker would return; the
local executor ignores it. A method without one cannot be called on a group of workers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

Dispatch = Literal["rows", "train", "prompts", "samples", "all"]
"""rows: the rows of an Experience split by tokens, the per-token `(n, L)` results put back in order
(forward passes). train: one optimizer step; every worker a shard of as many rows, the partial metrics
combined by their reductions. prompts: token-id prompts split by length, generations renumbered in
prompt-major order. samples: (prompts, responses, labels) split by text length, rewards back in order.
all: the same call on every worker (collective under a sharded backend); worker 0's result."""

F = TypeVar("F", bound=Callable)


def dispatch(how: Dispatch) -> Callable[[F], F]:
    """Declare how a call of the decorated worker method is split over a role's workers."""

    def mark(fn: F) -> F:
        fn.alignkit_dispatch = how  # type: ignore[attr-defined]
        return fn

    return mark


def dispatch_of(cls: type, method: str) -> Dispatch | None:
    """The declared dispatch of `cls.method`, or None (not callable on a group of workers)."""
    return getattr(getattr(cls, method, None), "alignkit_dispatch", None)
