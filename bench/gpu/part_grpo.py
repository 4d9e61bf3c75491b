"""GRPO on the kit's model: `alignkit rl --preset grpo`, local executor, torch backend, the setting's dtype
(bf16 on the GPU), 16 prompts x 8 completions per step, KL 0.04 against a reference model; the run is
bench_grpo.py's alignkit side (grpo_alignkit.py), with its FLOP counting, except for two policy updates
(mini-batches) per rollout: with one, the trainer never computes the old policy's log-probs, and the
trainer-vs-engine log-prob mismatch (logprob_mismatch/*) is not measured.

Figures (the first step is warm-up and not timed): step time and its phases (the run's timing/* metrics),
useful FLOPs per step (bench_grpo.py's count plus the old-policy forward), MFU of the whole step and of
training alone (reference, old-policy and policy passes over timing/logprobs + timing/train) against the
matmul peak the env part measured in the same run, peak memory (torch.cuda.max_memory_allocated during
the training loop, weights included), and the log-prob mismatch of every step."""

from __future__ import annotations

import shutil
import time

from partlib import Args, model_dir, part_main, read_result

from bench_grpo import parse_args, summarize
from grpo_alignkit import run_alignkit
from grpo_flops import model_dims
from grpo_setting import PROMPTS_PER_STEP

T0 = time.perf_counter()


def run(a: Args) -> dict:
    from alignkit.data.synth import make_records, write_jsonl

    s = a.setting
    peak = read_result(a.work, "env").get("figures", {}).get("matmul_peak_tflops")
    work = a.work / "grpo"
    shutil.rmtree(work, ignore_errors=True)  # a rerun on a warm machine starts afresh
    work.mkdir(parents=True)
    args = parse_args(["--steps", str(s.grpo_steps), "--warmup", "1", "--micro-batch", str(s.grpo_micro_batch),
                       "--max-new-tokens", str(s.grpo_max_new_tokens), "--device", a.device])
    args.size = "gpu_check"
    write_jsonl(make_records("arithmetic", "prompt", PROMPTS_PER_STEP * s.grpo_steps, 0), work / "prompts.jsonl")
    res = run_alignkit(args, work, model_dir(a.work), a.device, T0, dtype=s.dtype, extra=["--algo.mini_batches", "2"])
    summary = summarize(res, model_dims(model_dir(a.work)), threads=1)
    phases = summary["breakdown_s"]
    flops = summary["flops_split"]
    train_flops = 2 * flops["reference"] + flops["policy"]  # the old-policy forward costs what the reference's does
    step_flops = summary["flops_per_step"] + flops["reference"]
    train_s = phases.get("logprobs", 0.0) + phases.get("train", 0.0)
    figures = {
        "step_s": summary["step_s"], "phases_s": phases, "gen_tokens_per_s": summary["gen_tokens_per_s"],
        "mean_completion_len": summary["mean_completion_len"], "useful_tflop_per_step": step_flops / 1e12,
        "peak_mem_gib": res["mem_peak_mib"] / 1024, "mem_at_start_gib": res["mem_base_mib"] / 1024,
        "logprob_mismatch": res["logprob_mismatch"], "startup_s": res["startup_s"], "timed_steps": summary["timed_steps"],
    }
    line = f"step {summary['step_s']:.2f} s (" + ", ".join(f"{k} {v:.2f}" for k, v in phases.items() if v >= 0.01) + ")"
    if peak:
        figures["mfu_step"] = step_flops / summary["step_s"] / 1e12 / peak
        figures["mfu_train"] = train_flops / max(train_s, 1e-9) / 1e12 / peak
        line += f", MFU {100 * figures['mfu_step']:.1f}% (training {100 * figures['mfu_train']:.1f}%)"
    line += f", peak {figures['peak_mem_gib']:.1f} GiB"
    mismatch = [m["logprob_mismatch/mean_abs"] for m in res["logprob_mismatch"] if "logprob_mismatch/mean_abs" in m]
    line += f", log-prob mismatch <= {max(mismatch):.2g}" if mismatch else ", no log-prob mismatch logged"
    return {"figures": figures, "summary": line}


if __name__ == "__main__":
    part_main(run)
