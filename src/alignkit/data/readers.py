"""Read local data files into records that remember where they came from.

Every record carries a ``source`` such as ``data/train.jsonl:17`` so that later stages (templating,
tokenisation, reward checks) can point the user at the exact line or row that is wrong.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.errors import DataError

SUPPORTED_FORMATS = (
    ".jsonl, .json, .parquet, .csv, or a folder saved by datasets' save_to_disk (folder[:split])"
)

# JSON type names, so messages speak the file's language rather than Python's.
_JSON_TYPE_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class Record:
    """One example read from a data file.

    ``source`` is a human location for error messages: ``data/train.jsonl:17`` (1-based line) for
    JSON lines, ``x.json:row 4`` / ``x.parquet:row 4`` / ``x.csv:row 4`` / ``ds_folder:row 4``
    (1-based data row) for the other formats.
    """

    data: dict[str, Any]
    source: str


def read_records(path: str | Path) -> list[Record]:
    """Read every record of a ``.jsonl``, ``.json``, ``.parquet`` or ``.csv`` file, or of a folder saved by
    ``datasets`` (``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``).

    For a ``DatasetDict`` folder the "train" split is read unless the path names one as ``folder:split``.
    Raises ``DataError`` naming the path (and the line or row, where there is one) for a missing path,
    an unsupported format or a malformed record.
    """
    name = str(path)
    target = Path(name)
    if target.is_dir():
        return _read_saved_dataset(name, target, split=None)
    if target.is_file():
        return _read_file(name, target)
    folder, colon, split = name.rpartition(":")
    if colon and split and Path(folder).is_dir():
        return _read_saved_dataset(name, Path(folder), split=split)
    raise DataError(f"{name}: no such file or folder")


def _read_file(name: str, path: Path) -> list[Record]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return list(_read_jsonl(name, path))
    if suffix == ".json":
        return _read_json(name, path)
    if suffix == ".parquet":
        return _read_parquet(name, path)
    if suffix == ".csv":
        return _read_csv(name, path)
    raise DataError(
        f"{name}: unsupported data format '{suffix or path.name}'; supported: {SUPPORTED_FORMATS}"
    )


def _read_jsonl(name: str, path: Path) -> Iterator[Record]:
    # Binary reading with per-line decoding, so that even an encoding error names its line.
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{name}:{lineno}"
            try:
                line = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise DataError(f"{where}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from None
            except RecursionError:
                raise DataError(f"{where}: JSON nested too deeply to read") from None
            yield _as_record(value, where)


def _read_json(name: str, path: Path) -> list[Record]:
    try:
        value = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise DataError(f"{name}: not UTF-8 text") from None
    except RecursionError:
        raise DataError(f"{name}: JSON nested too deeply to read") from None
    except json.JSONDecodeError as e:
        # "Extra data" after a first complete object almost always means JSON lines named .json.
        hint = "; if this is one object per line, name the file .jsonl" if e.msg == "Extra data" else ""
        raise DataError(f"{name}:{e.lineno}: malformed JSON ({e.msg} at column {e.colno}){hint}") from None
    rows = _json_rows(name, value)
    return [_as_record(row, f"{name}:row {i}") for i, row in enumerate(rows, start=1)]


def _json_rows(name: str, value: Any) -> list[Any]:
    """The list of records in a JSON document: the document itself, or its one list-valued key."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        list_keys = [key for key, item in value.items() if isinstance(item, list)]
        if len(list_keys) == 1:
            return value[list_keys[0]]
        if list_keys:
            keys = ", ".join(repr(key) for key in list_keys)
            raise DataError(
                f"{name}: several list-valued keys ({keys}); expected exactly one holding the records"
            )
    got = "an object with no list-valued key" if isinstance(value, dict) else _json_type(value)
    raise DataError(
        f'{name}: expected a list of objects or an object with one list-valued key such as {{"data": [...]}}, got {got}'
    )


def _read_parquet(name: str, path: Path) -> list[Record]:
    # Imported here: pyarrow is only needed for Parquet and takes a noticeable time to import.
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except pa.ArrowException as e:
        raise DataError(f"{name}: not a readable Parquet file ({e})") from None
    return [Record(row, f"{name}:row {i}") for i, row in enumerate(rows, start=1)]


def _read_csv(name: str, path: Path) -> list[Record]:
    records = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        for i, row in enumerate(reader, start=1):
            where = f"{name}:row {i}"
            # DictReader files surplus cells under the key None and fills missing ones with None.
            if None in row or None in row.values():
                columns = len(reader.fieldnames or [])
                raise DataError(f"{where}: the row's cell count does not match the {columns} header columns")
            records.append(Record(dict(row), where))
    return records


def _read_saved_dataset(name: str, folder: Path, split: str | None) -> list[Record]:
    # Imported here: datasets is slow to import and only needed for saved-dataset folders.
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except FileNotFoundError:
        raise DataError(
            f"{name}: a folder, but not one saved by datasets' save_to_disk; supported: {SUPPORTED_FORMATS}"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        split = split or "train"
        if split not in loaded:
            splits = ", ".join(loaded)
            raise DataError(
                f"{name}: no split '{split}' in this DatasetDict; its splits: {splits} (pick one as folder:split)"
            )
        loaded = loaded[split]
    elif split is not None:
        raise DataError(f"{name}: '{folder}' holds a single Dataset with no splits; drop ':{split}'")
    return [Record(row, f"{name}:row {i}") for i, row in enumerate(loaded.to_list(), start=1)]


def _as_record(value: Any, where: str) -> Record:
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected a JSON object, got {_json_type(value)}")
    check_depth(value, where)
    return Record(value, where)


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPE_NAMES.get(type(value), "object")


MAX_DEPTH = 100


def check_depth(value: Any, where: str) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH levels (no record needs it, and deeper values break
    recursive code later: pickling to a worker, sending to a reward server)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DataError(f"{where}: JSON nested more than {MAX_DEPTH} levels deep")
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
