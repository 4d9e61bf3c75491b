"""A metric that carries its reduction: made where the numbers are, combined across micro-batches,
workers and updates by one rule, and turned into the logged number once (DESIGN.md rule 9).

A `Metric` is a partial result: over one micro-batch, one worker's share of a batch, or the whole
step. Partials of the same name combine with `merge`, which is associative and commutative, so the
order in which micro-batches and workers are combined never changes the result:

* ``sum``: totals add (counts, tokens).
* ``mean``: a weighted mean; ``total`` is the weighted sum and ``weight`` the sum of the weights
  (tokens, sequences, optimizer steps), so the combination is the mean over everything combined.
* ``max`` / ``min``: the extreme over everything combined; a partial of weight 0 saw nothing and
  never wins (an empty shard's 0 is not a maximum).

Values may be tensors while a loss makes them (`item` turns them into floats once, at the backend's
boundary) and floats after that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

Reduction = Literal["sum", "mean", "max", "min"]


@dataclass(frozen=True)
class Metric:
    kind: Reduction
    total: Any  # sum: the sum; mean: the weighted sum; max/min: the extreme (float or 0-dim tensor)
    weight: Any = 1.0  # mean: the sum of the weights; max/min: > 0 when anything was seen

    @property
    def value(self) -> float:
        """The number to log (0 for a mean or an extreme over nothing)."""
        if self.kind == "mean":
            return float(self.total) / float(self.weight) if float(self.weight) else 0.0
        if self.kind in ("max", "min") and not float(self.weight):
            return 0.0
        return float(self.total)

    def item(self) -> Metric:
        """The same metric with plain floats (detached from any tensor)."""
        return Metric(self.kind, _float(self.total), _float(self.weight))


def _float(x: Any) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def mean(value: Any, weight: Any) -> Metric:
    """The mean `value` over `weight` units (tokens, sequences, steps); combines weighted by them."""
    return Metric("mean", value * weight, weight)


def total(value: Any) -> Metric:
    """A sum: partials add."""
    return Metric("sum", value, 1.0)


def maximum(value: Any, weight: Any = 1.0) -> Metric:
    """A maximum over `weight` units (0: over nothing, so it never wins a combination)."""
    return Metric("max", value, weight)


def minimum(value: Any, weight: Any = 1.0) -> Metric:
    """A minimum over `weight` units (0: over nothing)."""
    return Metric("min", value, weight)


def merge(a: Metric, b: Metric) -> Metric:
    """Two partials of one metric as one."""
    if a.kind != b.kind:
        raise ValueError(f"cannot combine a {a.kind} metric with a {b.kind} one")
    if a.kind in ("sum", "mean"):
        return Metric(a.kind, a.total + b.total, a.weight + b.weight)
    if not float(b.weight):
        return a
    if not float(a.weight):
        return b
    pick = max if a.kind == "max" else min
    return Metric(a.kind, pick(a.total, b.total), a.weight + b.weight)


def merge_all(parts: Iterable[Mapping[str, Metric]]) -> dict[str, Metric]:
    """Partials of many metrics (one mapping per micro-batch, worker or update) combined by name; a name
    missing from a part simply has nothing from it."""
    out: dict[str, Metric] = {}
    for part in parts:
        for name, m in part.items():
            out[name] = merge(out[name], m) if name in out else m
    return out


def values(metrics: Mapping[str, Metric]) -> dict[str, float]:
    """The logged numbers: the one place a step's metrics are reduced."""
    return {name: m.value for name, m in metrics.items()}


def prefixed(prefix: str, metrics: Mapping[str, Metric]) -> dict[str, Metric]:
    """`metrics` under `prefix` + name (a role's metrics: ``critic/value_loss``)."""
    return {prefix + name: m for name, m in metrics.items()}
