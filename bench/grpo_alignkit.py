"""The alignkit side of bench_grpo.py: one `alignkit rl --preset grpo` run in this process.

The run goes through alignkit's own command line. The benchmark's only hooks wrap `OnlineRL.train`
(start of the training loop: start-up ends, the memory meter starts), `layout` (notes each generation
round's real prompt and response lengths) and `OnlineRL.step` (the process's CPU time per step); they
change no behaviour. Step times and their breakdown come from the run's metrics.jsonl (`step_time_s`,
`timing/*`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from common import MemoryMeter, step_gaps
from grpo_setting import GROUP, PROMPTS_PER_STEP

REWARD = f"{Path(__file__).resolve().with_name('grpo_setting.py')}:alignkit_reward"


def run_alignkit(args: argparse.Namespace, work: Path, model_dir: Path, device: str, t0: float,
                 dtype: str = "float32", extra: Sequence[str] = ()) -> dict:
    """One run; its per-step figures. `t0`: the clock when this process started (for start-up time);
    `dtype`: `--model.dtype` (bench_grpo compares in float32; bench/gpu trains in bfloat16); `extra`: more
    `alignkit rl` flags, after (so overriding) these."""
    import alignkit.trainers.rl.online_rl as online_rl
    from alignkit.cli import main as alignkit_main

    meter = MemoryMeter(device)
    marks: dict[str, float] = {}
    lengths: list[tuple[list[int], list[int]]] = []  # per generation round: prompt and response lengths
    cpu: list[float] = []  # CPU seconds of this process per step (time.process_time)
    real_train, real_layout, real_step = online_rl.OnlineRL.train, online_rl.layout, online_rl.OnlineRL.step

    def timed_train(self):  # everything before this call is start-up
        marks["train_start"] = time.perf_counter()
        meter.start()
        try:
            return real_train(self)
        finally:
            meter.stop()

    def recording_layout(prompts, gens, offset, pad_id):  # the same layout; it also notes real lengths
        lengths.append(([len(prompts[g.prompt_index].ids) for g in gens], [len(g.response_ids) for g in gens]))
        return real_layout(prompts, gens, offset, pad_id)

    def cpu_timed_step(self, i):
        c = time.process_time()
        try:
            return real_step(self, i)
        finally:
            cpu.append(time.process_time() - c)

    # The benchmark's only hooks; no behaviour changes.
    online_rl.OnlineRL.train, online_rl.layout = timed_train, recording_layout
    online_rl.OnlineRL.step = cpu_timed_step
    step_hook = None
    if args.profile:
        step_hook = _profile_one_step(online_rl, args, Path(args.profile) / f"alignkit_{args.size}")
    out = work / f"run_alignkit_{args.size}"
    rc = alignkit_main([
        "rl", "--preset", "grpo", "--model.path", str(model_dir),
        "--data.train_files", str(work / "prompts.jsonl"),
        "--reward.function", REWARD,
        "--output_dir", str(out), "--train.max_steps", str(args.steps),
        "--train.batch_size", str(PROMPTS_PER_STEP), "--rollout.n_samples_per_prompt", str(GROUP),
        "--rollout.max_new_tokens", str(args.max_new_tokens), "--rollout.temperature", "1.0",
        "--train.micro_batch_size", str(args.micro_batch), "--algo.kl_coef", str(args.beta),
        "--algo.ppo_epochs", "1", "--algo.mini_batches", "1",
        "--train.lr", str(args.lr), "--logging.progress", "false", "--data.max_length", str(args.max_length),
        "--model.dtype", dtype, "--train.device", device, "--checkpoint.save_steps", "0", *extra,
    ])
    if rc:
        raise SystemExit(f"alignkit rl exited with {rc}")
    if step_hook is not None:
        step_hook()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "step_time_s" in r]
    if len(rows) != args.steps or len(lengths) != args.steps:
        raise SystemExit(f"expected {args.steps} steps in {out / 'metrics.jsonl'}, found {len(rows)}")
    steps = [{"time_s": r["step_time_s"], "cpu_s": cpu[i], "completions": int(r["sequences"]),
              "prompt_lens": lengths[i][0], "response_lens": lengths[i][1],
              # Row width as alignkit's workers pack (workers/forward_utils.py `per_token`: width 0, the longest sequence).
              "slots": _packed_slots(lengths[i], args.micro_batch, 0),
              "breakdown": {k.split("/")[1]: r[k] for k in r if k.startswith("timing/")}}
             for i, r in enumerate(rows)]
    import alignkit

    return {"version": getattr(alignkit, "__version__", "?"), "startup_s": marks["train_start"] - t0,
            "steps": steps, "reward_last": rows[-1].get("reward/mean", math.nan),
            "kl_last": rows[-1].get("kl", math.nan), "timed_from": args.warmup,
            "logprob_mismatch": [{k: v for k, v in r.items() if k.startswith("logprob_mismatch/")} for r in rows],
            "end_to_end_gaps_s": step_gaps([r["elapsed_s"] for r in rows], args.warmup),
            **meter.as_dict()}


def _packed_slots(lens: tuple[list[int], list[int]], micro: int, capacity: int) -> int:
    """Token slots (real + padding) of one training forward over a step's sequences as alignkit lays
    them out: consecutive micro-batches, each packed first-fit-decreasing into rows of `capacity`
    (alignkit.data.packing, called read-only) and padded to its widest row."""
    from alignkit.data.packing import assign_rows

    total = [p + k for p, k in zip(*lens, strict=True)]
    slots = 0
    for i in range(0, len(total), micro):
        chunk = total[i : i + micro]
        rows = assign_rows(chunk, capacity, packing=True)
        slots += len(rows) * max(sum(chunk[j] for j in row) for row in rows)
    return slots


def _profile_one_step(online_rl, args: argparse.Namespace, folder: Path):
    """Wrap OnlineRL.step so that the first timed step runs under torch.profiler (CPU)."""
    import torch

    real_step, state = online_rl.OnlineRL.step, {}

    def step(self, i):
        if i != args.warmup:
            return real_step(self, i)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True,
                                    with_stack=False) as prof:
            out = real_step(self, i)
        state["prof"] = prof
        return out

    online_rl.OnlineRL.step = step

    def dump():
        prof = state["prof"]
        folder.mkdir(parents=True, exist_ok=True)
        avg = prof.key_averages()
        (folder / "ops_self.txt").write_text(avg.table(sort_by="self_cpu_time_total", row_limit=40))
        (folder / "ops_total.txt").write_text(avg.table(sort_by="cpu_time_total", row_limit=40))
        shapes = prof.key_averages(group_by_input_shape=True)
        (folder / "ops_shapes.txt").write_text(shapes.table(sort_by="self_cpu_time_total", row_limit=40))
        print(f"profile of step {args.warmup + 1} written to {folder}", file=sys.stderr)

    return dump
