"""The kit's report: one JSON file of every part's outcome and figures (rewritten after each part, so a run
stopped from outside still leaves what it measured), and one table for the console."""

from __future__ import annotations

import json
from pathlib import Path

from runner import Outcome


def write_json(path: Path, header: dict, outcomes: dict[str, Outcome]) -> None:
    path.write_text(json.dumps(header | {"parts": {n: o.as_dict() for n, o in outcomes.items()}}, indent=1,
                               default=str))


def table(outcomes: dict[str, Outcome], width: int = 150) -> str:
    """part | status | seconds | summary, then each problem's reason (indented)."""
    rows = [("part", "status", "s", "figures / reason")]
    rows += [(n, o.status, f"{o.seconds:.0f}", o.summary) for n, o in outcomes.items()]
    w0, w1, w2 = (max(len(r[i]) for r in rows) for i in range(3))
    lines = [f"{a:<{w0}}  {b:<{w1}}  {c:>{w2}}  {d}"[:width] for a, b, c, d in rows]
    for name, o in outcomes.items():
        if o.status in ("failed", "timeout") and o.reason:
            lines.append(f"--- {name}: end of its output")
            lines += ["    " + line[: width - 4] for line in o.reason.splitlines()]
    return "\n".join(lines)


def rerun_hint(outcomes: dict[str, Outcome]) -> str:
    """The command that reruns the parts that failed or timed out, and those skipped for want of time or of
    a part that failed ('' if none)."""
    again = [n for n, o in outcomes.items()
             if o.status in ("failed", "timeout") or o.reason.startswith(("budget", "needs"))]
    return f"rerun what failed: scripts/gpu_check.sh --only {','.join(again)}" if again else ""
