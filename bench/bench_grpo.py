"""GRPO step throughput, memory and MFU: alignkit's `rl --preset grpo` against TRL's `GRPOTrainer`.

Both sides train the same tiny random Llama (built offline) on the same synthetic arithmetic prompts
with the same setting: 16 prompts x group size 8 = 128 completions per step, at most 64 new tokens,
temperature 1, KL coefficient 0.04 (k3, in the loss) against a frozen reference model, fp32, one
policy update per rollout (alignkit: ppo_epochs 1, mini_batches 1; TRL: num_iterations 1 and one
generation round per optimizer step), learning rate 1e-6, AdamW (0.9, 0.95), clip 1.0, no gradient
checkpointing. Both score with the same Python reward (`digit_share`: the share of digit characters
in the completion; a random model never solves the sums, so an exact-match reward would be all
zeros, and a dense reward keeps advantages non-zero and completions long and varied). Neither side
gets the other's speed-ups: alignkit decodes with its own KV-cached engine and trains on packed
rows; TRL generates with `model.generate` and trains on padded batches, as a user gets it.

Each side runs in its own fresh Python process, one after the other (never at the same time), at
each model size. Timed: whole steps (generate, score, reference log-probs, policy forward/backward
and AdamW step, weight sync) after the warm-up steps; not timed: imports, loading, warm-up, export.
alignkit: `step_time_s` from metrics.jsonl; TRL: on_step_begin -> on_step_end of a TrainerCallback.

    python bench/bench_grpo.py                         # both sizes, 4 steps per side (1 warm-up), 2 runs each
    python bench/bench_grpo.py --sizes 512x4 --steps 6 --micro-batch 128 --trl-micro-batch 128
    python bench/bench_grpo.py --sides alignkit --sizes 128x2 --profile /tmp/prof   # torch.profiler table

Useful FLOPs (alignkit's MFU): N = 2 x (non-embedding matmul parameters of the layers + the LM head
hidden x vocab) per token, plus causal attention 4 x layers x hidden x context per token:
  F_fwd(T) = 2 N T + 2 L d T (T + 1)                      (one forward over T real tokens)
  generation: F_fwd(prompt) once per distinct prompt (alignkit prefills a prompt once for its group)
              + sum over the k-1 decode steps at context t of (2 N + 4 L d t) per completion
  training:   reference forward F_fwd(T) + policy forward and backward 3 F_fwd(T) per sequence,
              T = prompt + response tokens (padding never counted). No old-policy forward: with one
              update per rollout neither side runs it (the old log-probs are the detached new ones).
MFU = useful FLOPs of a step / step time / the measured fp32 matmul peak (square matmul, same threads).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

_T0 = time.perf_counter()

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    build_model,
    chosen_sides,
    comma_list,
    machine,
    parse_size,
    resolve_device,
    run_side,
    size_config,
    table,
    without,
)
from grpo_alignkit import run_alignkit  # noqa: E402
from grpo_flops import matmul_peak, model_dims, step_flops  # noqa: E402
from grpo_setting import GROUP, PROMPTS_PER_STEP  # noqa: E402
from grpo_trl import run_trl  # noqa: E402

SIDES = ("alignkit", "trl")
# The aims: alignkit steps/s over TRL's per size, and alignkit's MFU at the larger size.
AIM_RATIO = {"128x2": 3.0, "512x4": 1.5}
AIM_MFU = {"512x4": 0.5}


# -------------------------------------------------------------------------------------------- args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="What is timed and how FLOPs are counted: the top of bench/bench_grpo.py and bench/README.md.",
    )
    p.add_argument("--sizes", default="128x2,512x4",
                   help="comma-separated HIDDENxLAYERS tiny Llamas (heads = hidden/64, kv heads = heads/2) "
                        "(default: %(default)s)")
    p.add_argument("--steps", type=int, default=4, help="GRPO steps per side and size (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=1,
                   help="first steps left out of the timing (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch / OpenMP threads per side and for the matmul peak (default: %(default)s; keep 1 on "
                        "a shared machine: oversubscribed OpenMP threads slow every process down many-fold)")
    p.add_argument("--micro-batch", type=int, default=64,
                   help="alignkit --train.micro_batch_size: sequences per forward/backward of the reference and "
                        "the policy (default: %(default)s, alignkit's fastest of 32/64/128 here)")
    p.add_argument("--trl-micro-batch", type=int, default=32,
                   help="TRL per_device_train_batch_size; gradient_accumulation_steps = steps_per_generation = "
                        "128 / this, so a step is still ONE generation round of 128 completions and one optimizer "
                        "step (0: same as --micro-batch) (default: %(default)s, TRL's fastest of 32/64/128 here)")
    p.add_argument("--max-length", type=int, default=64,
                   help="alignkit --data.max_length, the prompt limit; alignkit packs training rows up to this + "
                        "max new tokens (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="longest completion (default: %(default)s)")
    p.add_argument("--beta", type=float, default=0.04, help="KL coefficient, both sides (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-6, help="learning rate, both sides (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: cuda when available (default: %(default)s)")
    p.add_argument("--sides", default=",".join(SIDES), help="sides to run, in this order (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=2,
                   help="runs per side and size, alternating the order; the fastest is reported, since other "
                        "load only ever slows a run down (default: %(default)s)")
    p.add_argument("--profile", default="",
                   help="alignkit side only: write torch.profiler tables of the first timed step to this folder "
                        "(that step then carries the profiler's overhead: use it for where time goes, not speed)")
    p.add_argument("--workdir", default="", help="keep models, prompts and run folders here (default: a temp dir)")
    p.add_argument("--json", default="", help="also write all results as JSON to this file")
    # Internal: the parent re-runs this script once per side and size with these.
    p.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--size", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps <= args.warmup:
        p.error("need 1 <= --warmup < --steps")
    batch = PROMPTS_PER_STEP * GROUP
    for mb in (args.micro_batch, args.trl_micro_batch or args.micro_batch):
        if mb < 1 or batch % mb:
            p.error(f"micro-batch sizes must divide {batch} (the completions of a step)")
    if (args.trl_micro_batch or args.micro_batch) % GROUP:
        p.error(f"TRL's micro-batch must be a multiple of the group size {GROUP}")
    return args


# ------------------------------------------------------------------------------------------ driver


def run_one_side(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    work = Path(args.workdir)
    model_dir = work / f"model_{args.size}"
    result = (run_alignkit if args.side == "alignkit" else run_trl)(args, work, model_dir, device, _T0)
    result |= {"side": args.side, "device": device, "threads": torch.get_num_threads(), "size": args.size}
    Path(args.result).write_text(json.dumps(result))


def summarize(res: dict, dims: dict, threads: int) -> dict:
    """Means over the timed steps: steps/s, generated tokens/s, lengths, FLOPs and the time breakdown."""
    timed = res["steps"][res["timed_from"]:]
    secs = sum(s["time_s"] for s in timed)
    gen_tokens = sum(sum(s["response_lens"]) for s in timed)
    flops = [step_flops(dims, s["prompt_lens"], s["response_lens"], GROUP) for s in timed]
    breakdown = {}
    for key in timed[0]["breakdown"]:
        breakdown[key] = statistics.mean(s["breakdown"][key] for s in timed)
    return {
        "timed_steps": len(timed), "step_s": secs / len(timed),
        "cpu_share": sum(s["cpu_s"] for s in timed) / secs / threads,
        "cpu_steps_per_s": len(timed) * threads / sum(s["cpu_s"] for s in timed), "steps_per_s": len(timed) / secs,
        "gen_tokens_per_s": gen_tokens / secs,
        "mean_completion_len": gen_tokens / sum(s["completions"] for s in timed),
        "completions_per_step": statistics.mean(s["completions"] for s in timed),
        "flops_per_step": statistics.mean(f["total"] for f in flops),
        "flops_split": {k: statistics.mean(f[k] for f in flops) for k in ("generate", "reference", "policy")},
        "achieved_gflops": sum(f["total"] for f in flops) / secs / 1e9,
        "train_slots_per_token": sum(s["slots"] for s in timed)
        / sum(p + k for s in timed for p, k in zip(s["prompt_lens"], s["response_lens"], strict=True)),
        "breakdown_s": breakdown,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # children inherit it; set before torch starts threads
    os.environ["MKL_NUM_THREADS"] = str(args.threads)
    if args.side:
        run_one_side(args)
        return
    sides = chosen_sides(args.sides, SIDES)
    sizes = comma_list(args.sizes)
    from alignkit.data.synth import make_records, write_jsonl

    device = resolve_device(args.device)
    peak = matmul_peak(args.threads)
    load0 = os.getloadavg()
    print(f"GRPO, {PROMPTS_PER_STEP} prompts x {GROUP} = {PROMPTS_PER_STEP * GROUP} completions/step, "
          f"<= {args.max_new_tokens} new tokens, beta {args.beta} with reference, fp32, one update per rollout, "
          f"{args.steps} steps per side ({args.warmup} warm-up, not timed), {device}; {machine()}; "
          f"alignkit micro-batch {args.micro_batch}, TRL micro-batch {args.trl_micro_batch or args.micro_batch}; "
          f"fp32 matmul peak {peak:.1f} GFLOP/s; load average {load0[0]:.2f}", flush=True)
    all_results: dict = {"args": vars(args), "matmul_peak_gflops": peak, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        records = make_records("arithmetic", "prompt", PROMPTS_PER_STEP * args.steps, 0)
        write_jsonl(records, work / "prompts.jsonl")
        child = without(list(argv if argv is not None else sys.argv[1:]), "--workdir", "--json", "--sizes")
        for size in sizes:
            hidden, layers = parse_size(size)
            model_dir = work / f"model_{size}"
            build_model(model_dir, **size_config(hidden, layers))
            dims = model_dims(model_dir)
            peak = max(peak, matmul_peak(args.threads))  # contention only lowers it: keep the best seen
            runs: dict[str, list[dict]] = {side: [] for side in sides}
            for r in range(args.repeats):
                for side in sides if r % 2 == 0 else sides[::-1]:
                    res = run_side(Path(__file__).resolve(), side,
                                   child + ["--workdir", str(work), "--size", size], timeout=3600)
                    res["summary"] = summarize(res, dims, args.threads)
                    runs[side].append(res)
                    s = res["summary"]
                    print(f"  {size} run {r + 1}/{args.repeats} {side:>8}: {s['steps_per_s']:.3f} steps/s "
                          f"({s['step_s']:.2f} s/step), {s['gen_tokens_per_s']:.0f} generated tokens/s, "
                          f"CPU share {s['cpu_share']:.2f}", flush=True)
            best = {side: max(rs, key=lambda x: x["summary"]["steps_per_s"]) for side, rs in runs.items()}
            print(report(size, dims, best, peak, args), flush=True)
            all_results["sizes"][size] = {"dims": dims, "best": best, "runs": runs}
    all_results["matmul_peak_gflops"] = peak
    load1 = os.getloadavg()
    print(f"load average at the end {load1[0]:.2f} (other processes on the machine slow both sides down)")
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=2))


def report(size: str, dims: dict, results: dict[str, dict], peak: float, args: argparse.Namespace) -> str:
    m = 1e6
    lines = [f"\n== {size}: hidden {dims['hidden']}, {dims['layers']} layers, vocab {dims['vocab']}; matmul params "
             f"{dims['n_layers_params'] / m:.2f}M layers + {dims['n_head_params'] / m:.2f}M LM head =="]
    headers = ["side", "version", "timed steps", "s/step", "steps/s", "gen tokens/s", "mean compl. len",
               "peak mem MiB", "GFLOP/s", "CPU share", "steps/CPU-s", "start-up s"]
    rows = []
    for side, r in results.items():
        s = r["summary"]
        rows.append([side, r["version"], s["timed_steps"], f"{s['step_s']:.2f}", f"{s['steps_per_s']:.3f}",
                     s["gen_tokens_per_s"], s["mean_completion_len"], r["mem_delta_mib"], s["achieved_gflops"],
                     f"{s['cpu_share']:.2f}", f"{s['cpu_steps_per_s']:.3f}", r["startup_s"]])
    lines.append(table(headers, rows))
    if "alignkit" in results and "trl" in results:
        a, t = results["alignkit"], results["trl"]
        sa, st = a["summary"], t["summary"]
        mem = a["mem_delta_mib"] / t["mem_delta_mib"] if t["mem_delta_mib"] > 0 else math.nan
        ratio = sa["steps_per_s"] / st["steps_per_s"]
        lines.append(f"alignkit / TRL: steps/s x{ratio:.2f}, generated tokens/s "
                     f"x{sa['gen_tokens_per_s'] / st['gen_tokens_per_s']:.2f}, peak memory x{mem:.2f}; "
                     f"steps per CPU-second x{sa['cpu_steps_per_s'] / st['cpu_steps_per_s']:.2f}")
        floor_s = sa["flops_per_step"] / (peak * 1e9)  # a step at 100% of the matmul peak
        lines.append(f"ceiling: a step's {sa['flops_per_step'] / 1e9:.1f} useful GFLOP take at least {floor_s:.2f} s "
                     f"at the matmul peak, so alignkit / TRL can reach at most x{st['step_s'] / floor_s:.2f} here")
        if size in AIM_RATIO:
            aim = AIM_RATIO[size]
            lines.append(f"aim steps/s >= x{aim:g} TRL: {'met' if ratio >= aim else 'MISSED'} (x{ratio:.2f})")
    if "alignkit" in results and size in AIM_MFU:
        mfu = results["alignkit"]["summary"]["achieved_gflops"] / peak
        lines.append(f"aim alignkit MFU >= {100 * AIM_MFU[size]:.0f}%: "
                     f"{'met' if mfu >= AIM_MFU[size] else 'MISSED'} ({100 * mfu:.1f}%)")
    for side, r in results.items():
        s, f = r["summary"], r["summary"]["flops_split"]
        b, total = s["breakdown_s"], s["step_s"]
        by_cpu = s["achieved_gflops"] / s["cpu_share"] if s["cpu_share"] > 0 else math.nan
        lines.append(f"{side} MFU {100 * s['achieved_gflops'] / peak:.1f}% of the {peak:.1f} GFLOP/s fp32 matmul "
                     f"peak "
                     f"({100 * by_cpu / peak:.1f}% by CPU time) "
                     f"- {s['flops_per_step'] / 1e9:.1f} useful GFLOP/step: generate {f['generate'] / 1e9:.1f}, "
                     f"reference {f['reference'] / 1e9:.1f}, policy fwd+bwd {f['policy'] / 1e9:.1f}")
        parts = ", ".join(f"{k} {v:.3f} s ({100 * v / total:.0f}%)" for k, v in b.items())
        lines.append(f"  step {total:.3f} s: {parts}")
        lines.append(f"  training forwards run {s['train_slots_per_token']:.2f} token slots per real token "
                     f"(padding{' and packing' if side == 'alignkit' else ''})")
        train_s = b.get("logprobs", 0) + b.get("train", 0) + b.get("train+rest", 0)
        gen_rate = f["generate"] / max(b.get("generate", 0), 1e-9) / 1e9
        train_rate = (f["reference"] + f["policy"]) / max(train_s, 1e-9) / 1e9
        lines.append(f"  phase rates: generate {gen_rate:.1f} GFLOP/s ({100 * gen_rate / peak:.0f}% of peak), "
                     f"reference + policy update {train_rate:.1f} GFLOP/s ({100 * train_rate / peak:.0f}% of peak)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
