"""The progress bar shown on a terminal (and nowhere else: logs stay clean in CI and files)."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(total: int, initial: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(
        total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True,
        disable=not (enabled and sys.stderr.isatty()),
    )


def short(metrics: dict[str, float], keys: tuple[str, ...]) -> dict[str, str]:
    """A few metrics formatted for the bar's postfix."""
    return {k: f"{metrics[k]:.4g}" for k in keys if k in metrics}
