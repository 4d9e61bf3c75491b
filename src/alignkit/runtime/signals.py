"""SIGTERM and SIGINT stop a run cleanly: the first asks it to stop at the next step boundary, after a
checkpoint; a second one exits at once (the last whole checkpoint stays).

Schedulers (Slurm, Kubernetes) send SIGTERM some time before SIGKILL, and Ctrl-C sends SIGINT, so
either is a request to save and leave. The handler only records the signal: the training loop asks
`requested()` at the end of each step, writes a checkpoint and raises `Stopped`, which the command
line turns into exit code 128 + signal (143 for SIGTERM, 130 for SIGINT).

Workers in other processes (the Ray executor's actors) never see the signal, which goes to the
process the user started; that process also writes the signal's number to `STOP_FILE` in the run
directory, and `requested(run_dir)` reads it there (a run directory is on a file system every worker
sees, as checkpoints need).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

STOP_FILE = ".alignkit-stop"
SIGNALS = (signal.SIGTERM, signal.SIGINT)

_received: int | None = None  # the first signal since `graceful_stop` was entered


class Stopped(Exception):
    """The run stopped on signal `signum` after writing `checkpoint` (None: nothing to save yet)."""

    def __init__(self, signum: int, checkpoint: Path | None):
        self.signum, self.checkpoint = signum, checkpoint
        name = signal.Signals(signum).name
        where = (f"checkpoint {checkpoint} written; continue with the same command and --resume" if checkpoint
                 else "no step had finished, so there is no checkpoint")
        super().__init__(f"stopped by {name}: {where}")

    def __reduce__(self):  # raised in a Ray worker, it is pickled to the driver
        return Stopped, (self.signum, self.checkpoint)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _say(message: str) -> None:
    # os.write, not print: a handler may run while the main thread is inside a write to stderr.
    os.write(2, (message + "\n").encode())


def _handler(stop_file: Path | None):
    def handle(signum: int, _frame) -> None:
        global _received
        name = signal.Signals(signum).name
        if _received is not None:
            _say(f"alignkit: second {name}: exiting now without a checkpoint (the last whole one stays)")
            os._exit(128 + signum)
        _received = signum
        if stop_file is not None:
            with suppress(OSError):
                stop_file.write_text(str(signum))
        _say(f"alignkit: {name} received: stopping after the current step, with a checkpoint "
             f"(send {name} again to exit at once)")

    return handle


@contextmanager
def graceful_stop(run_dir: str | Path | None = None) -> Iterator[None]:
    """For the duration, SIGTERM and SIGINT request a stop instead of killing the process; with
    `run_dir`, the request is also written to its STOP_FILE for workers in other processes (cleared on
    entry and exit). Install it after anything that sets its own handlers (`ray.init` sets SIGTERM's);
    the previous handlers are restored on exit. Outside the main thread Python cannot install
    handlers, and nothing changes."""
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stop_file = Path(run_dir) / STOP_FILE if run_dir is not None else None
    _clear(stop_file)
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _received = None
    handle = _handler(stop_file)
    for s in SIGNALS:
        signal.signal(s, handle)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _received = None
        _clear(stop_file)


def _clear(stop_file: Path | None) -> None:
    if stop_file is not None:
        with suppress(FileNotFoundError):
            stop_file.unlink()


def requested(run_dir: str | Path | None = None) -> int | None:
    """The signal that asked this run to stop, or None: this process's, else the one written to
    `run_dir`'s STOP_FILE by the process the user signalled."""
    if _received is not None or run_dir is None:
        return _received
    try:
        text = (Path(run_dir) / STOP_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else int(signal.SIGTERM)
