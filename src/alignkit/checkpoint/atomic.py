"""Write a directory so that it either exists whole or not at all."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to fill; on success it is renamed to `path` (a rename is
    atomic on one file system), on failure it is removed. An existing `path` is replaced."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_LEFTOVER = re.compile(r"^\..+\.(tmp|old)-\d+$")


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove the temporary folders (`.step_N.tmp-PID`, `.final.old-PID`) that saves interrupted by a
    crash left in `folder`; call it only while no save can be running (the run holds its lock)."""
    gone = [p for p in folder.iterdir() if _LEFTOVER.match(p.name) and p.is_dir()] if folder.is_dir() else []
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone
