"""Scale-out figures of the Ray executor on a tiny GRPO run, as ratios: (a) weight-sync time per step
against model size, (b) the step time of colocated vs separate placement, (c) asynchronous vs
synchronous rollout throughput.

Every run is `alignkit rl --preset grpo --executor ray` with one policy, reference, rollout and reward
worker (each a Ray actor) on one local Ray instance, started once here so that its start-up is paid
once; runs go one after the other, never at the same time. The reward is bench_grpo.py's digit share
(`grpo_setting.py`; dense, so advantages stay non-zero). fp32, KL 0.04 against the reference, one
update per rollout.

- (a) sync: `timing/sync` of metrics.jsonl (the policy's full weights into the object store, then into
  the rollout worker, bucket by bucket), median over the timed steps, for each `--sizes` model, placed
  colocated and synchronous; against the weights' bytes.
- (b) placement: median `step_time_s` at `--base-size`, colocated (roles share one bundle and take
  turns) and separate (each role on its own bundle: the policy's and the reference's forward passes of
  a step run at the same time).
- (c) async: steps/s between the end of the warm-up steps and the end of the last step (from
  `elapsed_s`), at `--base-size`, colocated: synchronous, and with `--rollout.async true
  --rollout.max_staleness 1` (the rollout worker generates step t+1's samples while the policy trains
  on step t's).
Not timed: Ray's and the actors' start-up, model loading, the warm-up steps, the final export.

    python bench/bench_scale.py             # 3 sizes, 10 steps per run: about 2 minutes on 2 idle CPU cores
    python bench/bench_scale.py --quick     # 2 sizes, 4 steps per run: about 1 minute
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import comma_list, machine, parse_size, size_config, table  # noqa: E402

REWARD = f"{HERE / 'grpo_setting.py'}:alignkit_reward"  # the share of digits in the completion


@dataclass(frozen=True)
class Setting:
    """One `alignkit rl` run of the benchmark."""

    size: str
    placement: str  # colocated | separate
    asynchronous: bool = False

    @property
    def name(self) -> str:
        return f"{self.size} {self.placement}{' async' if self.asynchronous else ''}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="What is timed: the top of bench/bench_scale.py and bench/README.md.")
    p.add_argument("--sizes", default="64x2,256x4,512x4",
                   help="comma-separated HIDDENxLAYERS tiny Llamas for the sync figures (default: %(default)s)")
    p.add_argument("--base-size", default="",
                   help="the model of the placement and async figures (default: the middle of --sizes)")
    p.add_argument("--steps", type=int, default=10, help="GRPO steps per run (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2,
                   help="first steps left out of the timing (default: %(default)s; async needs 2 to fill its pipeline)")
    p.add_argument("--prompts", type=int, default=8, help="prompts per step (default: %(default)s)")
    p.add_argument("--group", type=int, default=4, help="completions per prompt (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=24, help="longest completion (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="2 sizes (64x2, 256x4) and 4 steps (1 warm-up)")
    p.add_argument("--workdir", default="", help="keep models, prompts and run folders here (default: a temp dir)")
    p.add_argument("--json", default="", help="also write every run's figures as JSON to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.steps, args.warmup = "64x2,256x4", 4, 1
    sizes = comma_list(args.sizes)
    args.sizes = sizes
    args.base_size = args.base_size or sizes[len(sizes) // 2]
    if args.warmup < 1 or args.steps <= args.warmup + 1:
        p.error("need 1 <= --warmup and at least 2 timed steps after it")
    return args


def settings(args: argparse.Namespace) -> list[Setting]:
    base = args.base_size
    out = [Setting(size, "colocated") for size in args.sizes]
    if base not in args.sizes:
        out.append(Setting(base, "colocated"))
    return out + [Setting(base, "separate"), Setting(base, "colocated", asynchronous=True)]


def rl_argv(s: Setting, args: argparse.Namespace, work: Path) -> list[str]:
    argv = [
        "rl", "--preset", "grpo", "--executor", "ray", "--ray.placement", s.placement,
        "--model.path", str(work / f"model_{s.size}"), "--data.train_files", str(work / "prompts.jsonl"),
        "--reward.function", REWARD, "--output_dir", str(work / s.name.replace(" ", "_")),
        "--train.max_steps", str(args.steps), "--train.batch_size", str(args.prompts),
        "--rollout.n_samples_per_prompt", str(args.group), "--rollout.max_new_tokens", str(args.max_new_tokens),
        "--train.micro_batch_size", str(args.prompts * args.group), "--algo.ppo_epochs", "1",
        "--algo.mini_batches", "1", "--train.lr", "1e-6", "--model.dtype", "float32", "--train.device", "cpu",
        "--data.max_length", "64", "--checkpoint.save_steps", "0", "--logging.progress", "false",
    ]
    return argv + (["--rollout.async", "true", "--rollout.max_staleness", "1"] if s.asynchronous else [])


def run(s: Setting, args: argparse.Namespace, work: Path) -> dict:
    """One run; its timed figures from metrics.jsonl."""
    from alignkit.cli import main as alignkit_main
    from alignkit.metrics.logger import read_metrics

    with contextlib.redirect_stdout(io.StringIO()):  # the run's closing line; failures raise below
        rc = alignkit_main(rl_argv(s, args, work))
    if rc:
        raise SystemExit(f"{s.name}: alignkit rl exited with {rc}")
    rows = [r for r in read_metrics(work / s.name.replace(" ", "_")) if "step_time_s" in r]
    if len(rows) != args.steps:
        raise SystemExit(f"{s.name}: expected {args.steps} steps in metrics.jsonl, found {len(rows)}")
    timed = rows[args.warmup:]
    seconds = rows[-1]["elapsed_s"] - rows[args.warmup - 1]["elapsed_s"]
    return {"setting": s.name, "timed_steps": len(timed), "steps_per_s": len(timed) / seconds,
            "step_s": statistics.median(r["step_time_s"] for r in timed),
            "sync_s": statistics.median(r["timing/sync"] for r in timed),
            "sync_min_s": min(r["timing/sync"] for r in timed),
            "generate_s": statistics.median(r["timing/generate"] for r in timed),
            "tokens_per_s": sum(r["tokens_per_s"] * r["step_time_s"] for r in timed) / seconds,
            "staleness": max(r.get("rollout/staleness", 0) for r in timed)}


def weights_mib(model_dir: Path) -> float:
    """The model's weights as stored (fp32; a tied embedding once): what a sync moves."""
    return sum(f.stat().st_size for f in model_dir.glob("*.safetensors")) / 2**20


def report(results: dict[Setting, dict], mib: dict[str, float], args: argparse.Namespace) -> str:
    lines = ["", "(a) weight sync per step (colocated, synchronous)"]
    rows = []
    for size in args.sizes:
        r = results[Setting(size, "colocated")]
        rows.append([size, f"{mib[size]:.2f}", f"{1e3 * r['sync_s']:.1f}", f"{1e3 * r['sync_min_s']:.1f}",
                     f"{mib[size] / r['sync_s']:.0f}",
                     f"{1e3 * r['step_s']:.0f}", f"{100 * r['sync_s'] / r['step_s']:.1f}%"])
    lines.append(table(["size", "weights MiB", "sync ms", "min sync ms", "MiB/s", "step ms", "sync share"], rows))
    first = results[Setting(args.sizes[0], "colocated")]
    for size in args.sizes[1:]:
        r = results[Setting(size, "colocated")]
        lines.append(f"{size} / {args.sizes[0]}: sync time x{r['sync_s'] / first['sync_s']:.2f} "
                     f"for x{mib[size] / mib[args.sizes[0]]:.2f} the bytes")
    base = args.base_size
    colocated, separate = results[Setting(base, "colocated")], results[Setting(base, "separate")]
    asynchronous = results[Setting(base, "colocated", asynchronous=True)]
    lines += [
        "",
        f"(b) placement at {base}: median step {1e3 * separate['step_s']:.0f} ms separate, "
        f"{1e3 * colocated['step_s']:.0f} ms colocated: separate / colocated step time "
        f"x{separate['step_s'] / colocated['step_s']:.2f} (steps/s x{separate['steps_per_s'] / colocated['steps_per_s']:.2f})",
        f"(c) rollouts at {base}, colocated: {asynchronous['steps_per_s']:.3f} steps/s async (staleness "
        f"<= {asynchronous['staleness']}), {colocated['steps_per_s']:.3f} sync: async / sync throughput "
        f"x{asynchronous['steps_per_s'] / colocated['steps_per_s']:.2f} (generated tokens/s "
        f"x{asynchronous['tokens_per_s'] / colocated['tokens_per_s']:.2f})",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the actors inherit it: one thread each on a small machine
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING)  # before alignkit's own set-up: keeps its INFO lines out
    import ray
    import transformers

    from alignkit.config.schema import TinyModelConfig
    from alignkit.data.synth import make_records, write_jsonl
    from alignkit.models.tiny import build_tiny

    transformers.utils.logging.disable_progress_bar()
    print(f"GRPO on the Ray executor: {args.prompts} prompts x {args.group} completions/step, <= {args.max_new_tokens} "
          f"new tokens, {args.steps} steps per run ({args.warmup} warm-up, not timed), fp32, CPU; {machine()}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[Setting, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        write_jsonl(make_records("arithmetic", "prompt", args.prompts * args.steps, 0), work / "prompts.jsonl")
        mib = {}
        for size in dict.fromkeys([*args.sizes, args.base_size]):
            hidden, layers = parse_size(size)
            build_tiny(TinyModelConfig(output=str(work / f"model_{size}"), **size_config(hidden, layers)))
            mib[size] = weights_mib(work / f"model_{size}")
        # Logical CPUs: enough for the separate placement's 4 bundles whatever the machine has.
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            for s in settings(args):
                results[s] = run(s, args, work)
                r = results[s]
                print(f"  {s.name:>22}: {r['steps_per_s']:.3f} steps/s, median step {1e3 * r['step_s']:.0f} ms, "
                      f"sync {1e3 * r['sync_s']:.1f} ms", flush=True)
        finally:
            ray.shutdown()
    print(report(results, mib, args))
    print(f"load average at the end {os.getloadavg()[0]:.2f} (other processes on the machine slow runs down)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "weights_mib": mib,
                                               "runs": list(results.values())}, indent=2))


if __name__ == "__main__":
    main()
