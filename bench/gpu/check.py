"""The GPU verification kit: every CUDA path of alignkit measured in one prepared, time-boxed run.

    scripts/gpu_check.sh                           # on the GPU machine (installs the carried wheels first)
    scripts/gpu_check.sh --only fsdp2,deepspeed    # only these parts (and what they need)
    scripts/gpu_check.sh --dry-run                 # CPU, tiny model: what CI runs
    python bench/gpu/check.py --device cpu --tiny --out DIR

Each part (PARTS; the part_*.py files say what each measures) runs in its own process, time-boxed,
its output appended to OUT/gpu_check.log; a failed part is reported and the next one runs. The whole
run has a budget: a part starts only with MIN_START_S left, and its limit is cut to what is left.
Written to OUT: gpu_check.json (every part's status, seconds, figures), gpu_check.log, grpo_metrics.jsonl;
printed: one table. Exit 1 when any part failed or timed out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from partlib import HERE, child_env
from report import rerun_hint, table, write_json
from runner import Outcome, run_part
from setting import GPU, TINY

# name: (script, its options, the parts it needs). Run in this order: the cheap and the essential first,
# DeepSpeed (the part the issue makes optional) last.
PARTS: dict[str, tuple[str, list[str], tuple[str, ...]]] = {
    "env": ("part_env.py", [], ()),
    "tests": ("part_tests.py", [], ()),
    "model": ("part_model.py", [], ()),
    "generate": ("part_generate.py", [], ("model",)),
    "grpo": ("part_grpo.py", [], ("model",)),
    "fsdp2": ("part_sharded.py", ["--backend", "fsdp2"], ("model",)),
    "logprob_memory": ("part_logprob_memory.py", [], ("model",)),
    "deepspeed": ("part_sharded.py", ["--backend", "deepspeed"], ("model",)),
}
MIN_START_S = 20  # a part is not started with less of the budget left


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--tiny", action="store_true", help="the CPU dry run's sizes (bench/gpu/setting.py TINY)")
    p.add_argument("--only", default="", help=f"comma-separated parts, of: {', '.join(PARTS)} (env always runs)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "runs/gpu_check"),
                   help="where the report goes (default: $OUT, else runs/gpu_check)")
    p.add_argument("--work", type=Path, default=None,
                   help="scratch folder for the model and runs (default: a new temporary folder)")
    p.add_argument("--budget-s", type=float, default=0, help="seconds for the whole run (0: the setting's)")
    args = p.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := [s for s in chosen if s not in PARTS]:
        p.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    wanted = {"env", *chosen} if chosen else set(PARTS)
    wanted |= {need for name in wanted for need in PARTS[name][2]}
    args.parts = [name for name in PARTS if name in wanted]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setting = TINY if args.tiny else GPU
    budget = args.budget_s or setting.budget_s
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="alignkit_gpu_check_"))
    shutil.rmtree(work / "results", ignore_errors=True)
    log, report = args.out / "gpu_check.log", args.out / "gpu_check.json"
    log.write_text("")
    header = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": args.device,
              "setting": "tiny" if args.tiny else "gpu", "budget_s": budget, "parts_run": args.parts}
    print(f"gpu_check: parts {', '.join(args.parts)} on {args.device}; budget {budget:.0f} s; log {log}", flush=True)
    outcomes: dict[str, Outcome] = {}
    start = time.monotonic()
    for i, name in enumerate(args.parts, 1):
        script, options, needs = PARTS[name]
        left = budget - (time.monotonic() - start)
        limit = min(setting.timeouts[name], left)
        if missing := [n for n in needs if outcomes[n].status != "ok"]:
            why = f"needs {missing[0]}, which {outcomes[missing[0]].status}"
            outcome = Outcome("skipped", summary=why, reason=why)
        elif limit < MIN_START_S:
            outcome = Outcome("skipped", summary=f"budget: {left:.0f} s left", reason=f"budget: {left:.0f} s left")
        else:
            print(f"[{i}/{len(args.parts)}] {name} (limit {limit:.0f} s) ...", flush=True)
            result = work / "results" / f"{name}.json"
            cmd = [sys.executable, str(HERE / script), "--device", args.device, "--work", str(work),
                   "--result", str(result), *(["--tiny"] if args.tiny else []), *options]
            outcome = run_part(name, cmd, limit, log, result, child_env())
        outcomes[name] = outcome
        print(f"    {name}: {outcome.status} in {outcome.seconds:.0f} s  {outcome.summary}", flush=True)
        write_json(report, header | {"elapsed_s": time.monotonic() - start}, outcomes)
    metrics = work / "grpo" / "run_alignkit_gpu_check" / "metrics.jsonl"
    if "grpo" in outcomes and outcomes["grpo"].status == "ok":
        shutil.copy(metrics, args.out / "grpo_metrics.jsonl")
    elapsed = time.monotonic() - start
    print(f"\n{table(outcomes)}\n\nused {elapsed:.0f} s of the {budget:.0f} s budget; report {report}", flush=True)
    if hint := rerun_hint(outcomes):
        print(hint, flush=True)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if any(o.status in ("failed", "timeout") for o in outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
