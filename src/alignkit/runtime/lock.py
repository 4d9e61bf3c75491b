"""One run per output directory: `<output_dir>/.alignkit.lock`, held with an advisory file lock.

The kernel releases the lock when its holder dies, however it dies, so a lock is never stuck: a file
that still names a process but is not locked was left by a run that ended without cleaning up, and is
taken over with a warning. A second run while the first is alive is refused, naming the first's PID.
In a data-parallel run the process the user started holds it (the Ray driver; under torchrun, rank 0).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alignkit.backends.distributed import on_rank0, rank
from alignkit.errors import AlignkitError
from alignkit.runtime.disk import writing

log = logging.getLogger("alignkit")

LOCK_FILE = ".alignkit.lock"


def _holder(text: str) -> dict:
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return info if isinstance(info, dict) else {}


def _describe(info: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"PID {info.get('pid', '?')} on {info.get('host', '?')}, started {started}: {info.get('command', '?')}"


def acquire(run_dir: Path) -> int:
    """Lock `run_dir` for this process; the lock file's descriptor (keep it open while the run lasts)."""
    path = run_dir / LOCK_FILE
    with writing(path, "the run lock"):
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        info = _holder(os.read(fd, 1 << 16).decode(errors="replace"))
        os.close(fd)
        raise AlignkitError(f"{run_dir} is in use by another run ({_describe(info)}); wait for it to end, stop it, "
                            "or choose another --output_dir") from None
    previous = _holder(os.read(fd, 1 << 16).decode(errors="replace"))
    if previous:
        log.warning("%s: taking over the lock of a run that is no longer running (%s)", path, _describe(previous))
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": " ".join(sys.argv)}
    with writing(path, "the run lock"):
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
    return fd


def release(fd: int) -> None:
    """Empty the lock file (a clean end leaves nothing to take over) and unlock it."""
    os.ftruncate(fd, 0)
    os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold `run_dir`'s lock for the duration. In a process group rank 0 takes it, and a refusal stops
    every rank."""
    fd = on_rank0(lambda: acquire(Path(run_dir)))
    try:
        yield
    finally:
        if rank() == 0:
            release(fd)
