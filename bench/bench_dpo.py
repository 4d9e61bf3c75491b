"""DPO training throughput and memory: alignkit's `dpo` against TRL's `DPOTrainer`, same setting.

Both sides train the same tiny random Llama (built offline) on the same synthetic preference pairs
with the same batch size, length limit, steps, learning rate, beta 0.1, fp32 and a separate frozen
copy of the policy as the reference model (no precomputed reference log-probs, no gradient
checkpointing). Each side runs in its own fresh Python process, one after the other, so neither
warms or pollutes the other's memory. Everything else is each framework's default as a user gets it:
alignkit packs a micro-batch's pairs into rows (padding-free, block-diagonal attention mask), each
pair's prompt once for both responses (`--share-prompt false` packs the two sequences separately);
TRL pads each batch to its longest sequence (its `padding_free` is off by default and currently
unavailable) and uses its chunked fused LM head for log-probs.

Timed: from the end of warm-up step W to the end of the last step, i.e. whole steps of the training
loop (fetching and collating the batch, policy and reference forwards, backward, clipping, AdamW
step, per-step metric logging). Not timed: imports, model loading, tokenization, warm-up steps and
the final export. pairs/s = batch size x timed steps / timed seconds; tokens/s counts real
(non-padding) tokens of chosen and rejected sequences. CPU ms/pair: the process's CPU time over the
same steps, per pair (less sensitive than wall time to other load on a shared machine). Peak memory:
the peak during the training loop minus what was in use when it started (CPU: resident set via
/proc; CUDA: allocated memory). On a busy machine, compare with `--threads 1`.

    pip install -e '.[bench]'
    python bench/bench_dpo.py                                   # defaults: 256x4 model, 40 steps of 16 pairs
    python bench/bench_dpo.py --hidden 512 --layers 8 --steps 20 --batch-size 8
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

_T0 = time.perf_counter()  # start of this process, for the start-up time of a side

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    MemoryMeter,
    build_model,
    chosen_sides,
    machine,
    resolve_device,
    run_side,
    steady_rate,
    table,
    without,
    write_pairs,
)

SIDES = ("alignkit", "trl")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Timing and memory are explained at the top of bench/bench_dpo.py and in bench/README.md.",
    )
    p.add_argument("--hidden", type=int, default=256, help="hidden size of the tiny Llama (default: %(default)s)")
    p.add_argument("--layers", type=int, default=4, help="transformer layers of the tiny Llama (default: %(default)s)")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per side (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of the timing (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="pairs per optimizer step (one micro-batch, no accumulation) (default: %(default)s)")
    p.add_argument("--max-length", type=int, default=128, help="longest prompt+response in tokens (alignkit data.max_length, TRL max_length) (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-6, help="peak learning rate, both sides (default: %(default)s)")
    p.add_argument("--beta", type=float, default=0.1, help="DPO beta, both sides (default: %(default)s)")
    p.add_argument("--task", default="sort", choices=["sort", "arithmetic", "reverse"], help="synthetic pair task (default: %(default)s)")
    p.add_argument("--pairs", type=int, default=0, help="training pairs (0: steps x batch size, one pass) (default: %(default)s)")
    p.add_argument("--share-prompt", default="true", choices=["true", "false"],
                   help="alignkit's --data.share_prompt: a pair's prompt goes through the model once (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: cuda when available (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per side (0: torch's default) (default: %(default)s)")
    p.add_argument("--sides", default=",".join(SIDES), help="comma-separated sides to run, in this order (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=2,
                   help="runs per side, alternating the order (A B, B A, ...); the fastest run of each side is "
                        "reported, since other load on the machine only ever slows a run down (default: %(default)s)")
    p.add_argument("--workdir", default="", help="keep the model, data and run folders here (default: a temp dir)")
    p.add_argument("--json", default="", help="also write the results as JSON to this file")
    # Internal: the parent re-runs this script once per side with these.
    p.add_argument("--side", choices=SIDES, help="internal: run only this side in this process")
    p.add_argument("--result", help="internal: where --side writes its JSON result")
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps <= args.warmup:
        p.error("need 1 <= --warmup < --steps")
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


# ---------------------------------------------------------------------------------------- alignkit


def run_alignkit(args: argparse.Namespace, work: Path, device: str) -> dict:
    import alignkit.trainers.supervised.preference as preference
    from alignkit.cli import main as alignkit_main
    from alignkit.metrics.logger import MetricsLogger

    meter = MemoryMeter(device)
    marks: dict[str, float] = {}
    real_loop = preference.train_supervised

    def timed_loop(*a, **kw):  # everything before this call is start-up
        marks["train_start"] = time.perf_counter()
        meter.start()
        try:
            return real_loop(*a, **kw)
        finally:
            meter.stop()

    # The loop logs every step (log_steps 1) right after the optimizer step: that call is the step end.
    clock: list[tuple[float, float]] = []
    real_log = MetricsLogger.log

    def log(self, step, metrics):
        clock.append((time.perf_counter(), time.process_time()))
        return real_log(self, step, metrics)

    # The benchmark's two hooks: they take time stamps and change nothing else.
    preference.train_supervised = timed_loop
    MetricsLogger.log = log
    out = work / "run_alignkit"
    rc = alignkit_main([
        "dpo", "--model.path", str(work / "model"), "--data.train_files", str(work / "pairs.jsonl"),
        "--output_dir", str(out), "--train.max_steps", str(args.steps),
        "--train.batch_size", str(args.batch_size), "--train.micro_batch_size", str(args.batch_size),
        "--train.lr", str(args.lr), "--dpo.beta", str(args.beta), "--data.max_length", str(args.max_length),
        "--model.dtype", "float32", "--train.device", device, "--logging.progress", "false",
        "--checkpoint.save_steps", "0", "--data.share_prompt", args.share_prompt,
    ])
    if rc:
        raise SystemExit(f"alignkit dpo exited with {rc}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "elapsed_s" in r and "tokens" in r]
    if len(rows) != args.steps or len(clock) != args.steps:
        raise SystemExit(f"expected {args.steps} logged steps, found {len(rows)} lines in metrics.jsonl, {len(clock)} calls")
    import alignkit

    return summary(args, "alignkit", getattr(alignkit, "__version__", "?"), marks["train_start"], clock,
                   [r["tokens"] for r in rows], rows[-1].get("loss", math.nan), meter)


def summary(args, side: str, version: str, train_start: float, clock: list[tuple[float, float]],
            tokens: list[int], last_loss: float, meter: MemoryMeter) -> dict:
    """One side's result: rates over the timed steps from (wall, CPU) stamps taken at each step end."""
    wall, cpu = [c[0] for c in clock], [c[1] for c in clock]
    pairs = [args.batch_size] * len(clock)
    return {
        "side": side,
        "version": version,
        "startup_s": train_start - _T0,
        "pairs": steady_rate(wall, pairs, args.warmup),
        "tokens": steady_rate(wall, tokens, args.warmup),
        "cpu": steady_rate(cpu, pairs, args.warmup),  # "rate": pairs per CPU-second of this process
        "final_loss": last_loss,
        **meter.as_dict(),
    }


# --------------------------------------------------------------------------------------------- TRL


def run_trl(args: argparse.Namespace, work: Path, device: str) -> dict:
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback, ProgressCallback, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    records = [json.loads(line) for line in (work / "pairs.jsonl").read_text().splitlines() if line.strip()]
    model_dir = str(work / "model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    meter = MemoryMeter(device)
    clock: list[tuple[float, float]] = []
    marks: dict[str, float] = {}
    losses: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, a, state, control, **kw):
            marks["train_start"] = time.perf_counter()
            meter.start()

        def on_step_end(self, a, state, control, **kw):
            clock.append((time.perf_counter(), time.process_time()))

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

        def on_train_end(self, a, state, control, **kw):
            meter.stop()

    fields = {f.name for f in dataclasses.fields(DPOConfig)}
    # TRL turns gradient checkpointing on by default; alignkit does not. Off on both sides.
    no_ckpt = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    config = DPOConfig(
        output_dir=str(work / "run_trl"),
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        max_steps=args.steps,
        learning_rate=args.lr,
        # alignkit's defaults: AdamW betas (0.9, 0.95), no weight decay, clip 1.0, cosine to 0.1 x lr, 3% warm-up
        adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.0, max_grad_norm=1.0,
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1}, warmup_steps=0.03,
        beta=args.beta,
        loss_type=["sigmoid"],
        max_length=args.max_length,
        precompute_ref_log_probs=False,
        bf16=False, fp16=False,
        use_cpu=device == "cpu",
        model_init_kwargs={"dtype": "float32"},
        report_to=[], logging_steps=1, save_strategy="no", eval_strategy="no",
        dataloader_num_workers=0, disable_tqdm=True, seed=42,
        **{no_ckpt: False},
    )
    trainer = DPOTrainer(
        model=model_dir, args=config, train_dataset=Dataset.from_list(records),
        processing_class=tokenizer, callbacks=[Clock()],
    )
    for cb in (PrinterCallback, ProgressCallback):  # per-step console printing only; logging itself stays
        trainer.remove_callback(cb)
    tokens: list[int] = []
    collate = trainer.data_collator

    def counting_collator(examples):  # the same collator; it also counts real tokens per batch, in order
        batch = collate(examples)
        tokens.append(int(batch["attention_mask"].sum()))
        return batch

    trainer.data_collator = counting_collator
    assert trainer.ref_model is not None, "TRL should hold a separate reference model here"
    trainer.train()
    if len(clock) != args.steps:
        raise SystemExit(f"expected {args.steps} TRL steps, timed {len(clock)}")
    return summary(args, "trl", trl.__version__, marks["train_start"], clock, tokens[: len(clock)],
                   losses[-1] if losses else math.nan, meter)


# ------------------------------------------------------------------------------------------ driver


def run_one_side(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    work = Path(args.workdir)
    result = (run_alignkit if args.side == "alignkit" else run_trl)(args, work, device)
    result |= {"device": device, "threads": torch.get_num_threads()}
    Path(args.result).write_text(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.side:
        run_one_side(args)
        return
    sides = chosen_sides(args.sides, SIDES)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        build_model(work / "model", args.hidden, args.layers)
        write_pairs(work / "pairs.jsonl", args.pairs or args.steps * args.batch_size, args.task, seed=0)
        child = [a for a in (argv if argv is not None else sys.argv[1:])]
        child = without(child, "--workdir", "--json") + ["--workdir", str(work)]
        print(f"DPO, {args.hidden}x{args.layers} tiny Llama, {args.task} pairs, batch {args.batch_size} pairs, "
              f"max length {args.max_length}, {args.steps} steps ({args.warmup} warm-up, not timed), "
              f"fp32, {device}; {machine()}" + (f"; --threads {args.threads}" if args.threads else ""),
              flush=True)
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        for r in range(args.repeats):
            for side in sides if r % 2 == 0 else sides[::-1]:
                res = run_side(Path(__file__).resolve(), side, child)
                runs[side].append(res)
                print(f"  run {r + 1}/{args.repeats} {side:>8}: {res['pairs']['rate']:7.1f} pairs/s, "
                      f"median step {1000 * res['pairs']['median_step_s']:.0f} ms", flush=True)
    results = {side: max(rs, key=lambda x: x["pairs"]["rate"]) for side, rs in runs.items()}
    print(report(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "best": results, "runs": runs}, indent=2))


def report(results: dict[str, dict], args: argparse.Namespace) -> str:
    headers = ["side", "version", "timed steps", "timed s", "pairs/s", "tokens/s", "median step ms",
               "CPU ms/pair", "peak mem MiB", "start-up s", "last loss"]
    rows = [[side, r["version"], r["pairs"]["steps"], f"{r['pairs']['seconds']:.2f}", r["pairs"]["rate"],
             r["tokens"]["rate"], 1000 * r["pairs"]["median_step_s"], 1000 / r["cpu"]["rate"],
             r["mem_delta_mib"], r["startup_s"], f"{r['final_loss']:.4f}"] for side, r in results.items()]
    lines = [table(headers, rows)]
    if "alignkit" in results and "trl" in results:
        a, t = results["alignkit"], results["trl"]
        mem = a["mem_delta_mib"] / t["mem_delta_mib"] if t["mem_delta_mib"] > 0 else math.nan
        lines.append(f"alignkit / TRL: pairs/s x{a['pairs']['rate'] / t['pairs']['rate']:.2f}, "
                     f"tokens/s x{a['tokens']['rate'] / t['tokens']['rate']:.2f}, "
                     f"by median step time x{t['pairs']['median_step_s'] / a['pairs']['median_step_s']:.2f}, "
                     f"pairs per CPU-second x{a['cpu']['rate'] / t['cpu']['rate']:.2f}, "
                     f"peak memory x{mem:.2f}")
    cuda = any(r["device"] == "cuda" for r in results.values())
    mem_kind = "allocated CUDA memory" if cuda else "resident set (RSS)"
    lines.append(
        f"Timed: whole training steps from the end of step {args.warmup} to the end of step {args.steps} (batch "
        f"fetch + collate, policy and reference forwards, backward, clipping, AdamW, per-step logging); imports, "
        f"model loading, tokenization, warm-up steps and export are not. Fastest of {args.repeats} run(s) per side, "
        f"each in its own process. tokens/s counts non-padding tokens. CPU ms/pair: this process's CPU time "
        f"(user + system, all threads) over the same steps, per pair. peak mem: the highest {mem_kind} during the "
        f"training loop minus the {mem_kind} when it started.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
