"""Running one part of the kit: a child process in a session of its own, its output appended to the run's
log, stopped with everything it started (torchrun's workers, pytest's children) past its time limit.
Whatever happens to the child, the caller gets an Outcome: one part's failure never stops the others."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Outcome:
    """How a part ended: status ok, failed, timeout or skipped; its figures and one-line summary."""

    status: str
    seconds: float = 0.0
    summary: str = ""
    figures: dict = field(default_factory=dict)
    reason: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def run_part(name: str, cmd: list[str], timeout_s: float, log: Path, result: Path, env: dict) -> Outcome:
    """Run `cmd` for at most `timeout_s` seconds; its Outcome from its exit and its `result` JSON file."""
    result.unlink(missing_ok=True)
    start = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n===== {name}: {' '.join(cmd)}\n")
        out.flush()
        offset = out.tell()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole session: torchrun's and pytest's children too
            proc.wait()
            rc = None
    seconds = time.monotonic() - start
    if rc is None:
        return Outcome("timeout", seconds, f"stopped after its {timeout_s:.0f} s", reason=_tail(log, offset))
    if rc != 0 or not result.exists():
        return Outcome("failed", seconds, f"exit {rc}", reason=_tail(log, offset))
    r = json.loads(result.read_text())
    return Outcome(r.get("status", "ok"), seconds, r.get("summary", ""), r.get("figures", {}), r.get("reason", ""))


def _tail(log: Path, offset: int, lines: int = 15) -> str:
    """The last `lines` lines the child wrote (from `offset` of the log)."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])

