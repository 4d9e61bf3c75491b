"""How well the cost model predicts real step times: each run's error and the rank correlation.

The planner needs the model to *order* plans correctly more than to get seconds right, so the
report gives Spearman's rank correlation beside the relative error of each run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    """One run: what the cost model predicted for a step, and what the run measured."""

    name: str
    detail: str  # the run's shape, e.g. "grpo h128x4 8x4 gen 16"
    predicted_s: float
    measured_s: float

    @property
    def error(self) -> float:
        """Relative error of the prediction: positive when it overestimates."""
        return (self.predicted_s - self.measured_s) / self.measured_s


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; tied values share the mean of the ranks they span (as scipy's rankdata)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks (ties averaged). NaN when
    either side has one distinct value (no order to compare)."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"spearman needs two sequences of equal length >= 2, got {len(xs)} and {len(ys)}")
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx, vy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return math.nan
    return cov / math.sqrt(vx * vy)


def render_comparison(rows: Sequence[Comparison]) -> str:
    """The table of runs, then the mean absolute error and the rank correlation."""
    head = ("run", "shape", "predicted s/step", "measured s/step", "error %")
    body = [(r.name, r.detail, f"{r.predicted_s:.4f}", f"{r.measured_s:.4f}", f"{100 * r.error:+.1f}")
            for r in rows]  # fmt: skip
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    lines = []
    for row in (head, tuple("-" * w for w in widths), *body):
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    mae = sum(abs(r.error) for r in rows) / len(rows)
    rho = spearman([r.predicted_s for r in rows], [r.measured_s for r in rows]) if len(rows) > 1 else math.nan
    lines.append("")
    lines.append(f"mean absolute error: {100 * mae:.1f}%")
    lines.append(f"Spearman rank correlation (predicted vs measured, {len(rows)} runs): {rho:.3f}")
    return "\n".join(lines) + "\n"
