"""What every part of the kit shares: its command line, where its files are, and its result file.

A part is a script `bench/gpu/part_NAME.py` that check.py runs in a child process:

    python bench/gpu/part_NAME.py --device cuda|cpu --work DIR --result FILE [--tiny] [part options]

It writes one JSON object to FILE: `summary` (one line for the table), `figures` (numbers for the JSON
report) and, where it did not measure what it is for, `status` ("skipped" or "failed") with `reason`.
A part that raises exits non-zero without a result; check.py then reports it failed, with the end of
its output. Parts import partlib before any bench/ module: importing it puts bench/ on sys.path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
REPO = BENCH.parent
# The parts reuse the side-by-side benchmarks' modules (bench/*.py import each other by file name).
for folder in (HERE, BENCH):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from setting import GPU, TINY, Setting  # noqa: E402


def model_dir(work: Path) -> Path:
    """The model every part uses; the `model` part builds it."""
    return work / "model"


def read_result(work: Path, name: str) -> dict:
    """Another part's result in this run (empty if it has none)."""
    path = work / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def child_env(**extra: str) -> dict[str, str]:
    """The environment for alignkit subprocesses (torchrun, pytest): offline, this interpreter's paths."""
    return dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", **extra)


class Args(argparse.Namespace):
    device: str
    work: Path
    result: Path
    tiny: bool
    setting: Setting


def part_main(run: Callable[[Args], dict], add_options: Callable[[argparse.ArgumentParser], None] | None = None):
    """Parse the common options (and the part's own), run the part, write its result."""
    p = argparse.ArgumentParser(description=(sys.modules["__main__"].__doc__ or "").split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--work", type=Path, required=True, help="the run's scratch folder (models, runs)")
    p.add_argument("--result", type=Path, required=True, help="write the part's JSON result here")
    p.add_argument("--tiny", action="store_true", help="the CPU dry run's sizes (setting.TINY)")
    if add_options:
        add_options(p)
    args = p.parse_args(namespace=Args())
    args.setting = TINY if args.tiny else GPU
    result = run(args)
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=1, default=str))


def step_rows(run_dir: Path) -> list[dict]:
    """The step rows of a run's metrics.jsonl."""
    from alignkit.metrics.logger import read_metrics

    return [r for r in read_metrics(run_dir) if "step" in r]
