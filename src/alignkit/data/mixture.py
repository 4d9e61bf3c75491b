"""Mix several data files into one training set, and split off an evaluation set."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from fractions import Fraction

from alignkit.data.readers import Record, read_records
from alignkit.errors import DataError

logger = logging.getLogger("alignkit")


def load_mixture(
    files: Sequence[str],
    weights: Sequence[float] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
) -> list[Record]:
    """Read ``files`` and mix their records into one list.

    Without ``weights``: all records of all files are concatenated, shuffled with ``random.Random(seed)``,
    and then cut to the first ``max_samples`` if it is given.

    With ``weights`` (one positive number per file; normalised to sum to 1): the mixture has ``max_samples``
    records, or if that is None the largest total T at which every file's share ``w_i * T`` fits in the
    file, so that no record needs to be repeated. File i contributes ``w_i * total`` records, rounded so
    that the counts add up to exactly ``total`` (largest remainder), drawn without replacement. A file
    smaller than its share is cycled (every record used equally often, give or take one) and a warning is
    logged on the "alignkit" logger. The drawn records are then shuffled; everything depends on ``seed`` only.

    Raises ``DataError`` for an empty file list, a weights list of the wrong length, a non-positive weight,
    a non-positive ``max_samples`` or a file without records.
    """
    if not files:
        raise DataError("no data files given: a mixture needs at least one file")
    if max_samples is not None and max_samples < 1:
        raise DataError(f"max_samples must be a positive number of records, got {max_samples}")
    shares = None if weights is None else _normalised(files, weights)
    per_file = [read_records(path) for path in files]
    for path, records in zip(files, per_file, strict=True):
        if not records:
            raise DataError(f"{path}: no records; a mixture cannot draw from an empty file")

    rng = random.Random(seed)
    if shares is None:
        mixed = [record for records in per_file for record in records]
        rng.shuffle(mixed)
        return mixed if max_samples is None else mixed[:max_samples]

    total = max_samples if max_samples is not None else _largest_total(per_file, shares)
    mixed = []
    for path, records, count in zip(files, per_file, _counts(shares, total), strict=True):
        mixed.extend(_draw(path, records, count, rng))
    rng.shuffle(mixed)
    return mixed


def train_eval_split(
    records: list[Record], eval_fraction: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """Split ``records`` into (train, eval), deterministically for a given ``seed``.

    Eval gets ``round(eval_fraction * n)`` records, at least 1 when ``eval_fraction > 0`` and n >= 2, and never
    all of them (train keeps at least one record when there is one). The records to hold out are picked with
    ``random.Random(seed)``; both parts keep the input order. ``eval_fraction`` must be in [0, 1).
    """
    if not 0 <= eval_fraction < 1:
        raise DataError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    n = len(records)
    count = round(eval_fraction * n)
    if eval_fraction > 0 and n >= 2:
        count = max(count, 1)
    count = min(count, max(n - 1, 0))
    held_out = set(random.Random(seed).sample(range(n), count))
    train = [record for i, record in enumerate(records) if i not in held_out]
    evaluation = [record for i, record in enumerate(records) if i in held_out]
    return train, evaluation


def _normalised(files: Sequence[str], weights: Sequence[float]) -> list[Fraction]:
    # Exact fractions, so that shares like 1/3 give whole counts without float round-off.
    if len(weights) != len(files):
        raise DataError(f"{len(weights)} weights for {len(files)} files; give one weight per file")
    for path, weight in zip(files, weights, strict=True):
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight > 0):
            raise DataError(f"{path}: weight {weight!r} must be a positive number")
    exact = [Fraction(weight) for weight in weights]
    return [weight / sum(exact) for weight in exact]


def _largest_total(per_file: list[list[Record]], shares: list[Fraction]) -> int:
    """The largest total T with ``share * T <= len(file)`` for every file: no file has to repeat a record."""
    return min(math.floor(len(records) / share) for records, share in zip(per_file, shares, strict=True))


def _counts(shares: list[Fraction], total: int) -> list[int]:
    """Whole counts near ``share * total`` that add up to ``total`` (largest remainder method)."""
    exact = [share * total for share in shares]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _draw(path: str, records: list[Record], count: int, rng: random.Random) -> list[Record]:
    if count <= len(records):
        return rng.sample(records, count)
    logger.warning(
        "%s: has %d records but its weight asks for %d; repeating records to fill the mixture",
        path,
        len(records),
        count,
    )
    rounds, rest = divmod(count, len(records))
    return records * rounds + rng.sample(records, rest)
