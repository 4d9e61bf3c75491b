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
import dataclasses
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
from common import MemoryMeter, machine, run_side, table, without  # noqa: E402

SIDES = ("alignkit", "trl")
GROUP = 8
PROMPTS_PER_STEP = 16
# The aims: alignkit steps/s over TRL's per size, and alignkit's MFU at the larger size.
AIM_RATIO = {"128x2": 3.0, "512x4": 1.5}
AIM_MFU = {"512x4": 0.5}


# ------------------------------------------------------------------------------------ shared reward


def digit_share(text: str) -> float:
    """The share of digit characters in `text` (0 for an empty completion)."""
    return sum(c.isdigit() for c in text) / max(len(text), 1)


def alignkit_reward(prompts, responses, labels):  # alignkit's signature (rewards/function.py)
    return [digit_share(r) for r in responses]


def trl_reward(prompts, completions, **kwargs):  # TRL's signature (reward_funcs)
    return [digit_share(c) for c in completions]


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


def parse_size(s: str) -> tuple[int, int]:
    hidden, _, layers = s.lower().partition("x")
    return int(hidden), int(layers)


def size_config(hidden: int, layers: int) -> dict:
    heads = max(2, hidden // 64)
    return dict(hidden=hidden, layers=layers, heads=heads, kv_heads=max(1, heads // 2))


def resolve_device(name: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


# ----------------------------------------------------------------------------------------- FLOPs


def model_dims(model_dir: Path) -> dict:
    """Matmul parameters per token (layers and LM head), layers and attention width of the model."""
    cfg = json.loads((model_dir / "config.json").read_text())
    d, L, v = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or d // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    per_layer = d * q + 2 * d * kv + q * d + 3 * d * cfg["intermediate_size"]
    return {"hidden": d, "layers": L, "vocab": v, "attn_width": q, "n_layers_params": L * per_layer,
            "n_head_params": d * v, "n_matmul": L * per_layer + d * v}


def forward_flops(dims: dict, tokens: int) -> float:
    """One causal forward over `tokens` real tokens: 2 N T + 4 L d sum_{i<=T} i."""
    return 2 * dims["n_matmul"] * tokens + 2 * dims["layers"] * dims["attn_width"] * tokens * (tokens + 1)


def step_flops(dims: dict, prompt_lens: list[int], response_lens: list[int], group: int) -> dict:
    """Useful FLOPs of one GRPO step from its real prompt and response lengths (one entry per completion,
    prompt-major in groups of `group`). See the module docstring for the formula."""
    n, la = dims["n_matmul"], dims["layers"] * dims["attn_width"]
    gen = sum(forward_flops(dims, p) for p in prompt_lens[::group])  # prefill, once per distinct prompt
    for p, k in zip(prompt_lens, response_lens, strict=True):
        # decode steps feed tokens p+1 .. p+k-1 (the last sampled token is never fed back)
        gen += 2 * n * max(k - 1, 0) + 4 * la * sum(range(p + 1, p + k))
    fwd = sum(forward_flops(dims, p + k) for p, k in zip(prompt_lens, response_lens, strict=True))
    return {"generate": gen, "reference": fwd, "policy": 3 * fwd, "total": gen + 4 * fwd}


def matmul_peak(threads: int, sizes=(1024, 2048), repeats: int = 5) -> float:
    """Best fp32 square-matmul rate in GFLOP/s with `threads` threads (CPU), or on the GPU. On the CPU
    each repeat is timed by the wall clock and by this process's CPU time / threads, and the shorter
    counts, so that time slices lost to other processes on a shared machine do not lower the peak."""
    import torch

    torch.set_num_threads(threads)
    cuda = torch.cuda.is_available()
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device="cuda" if cuda else "cpu")
        b = torch.randn_like(a)
        a @ b
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            t, c = time.perf_counter(), time.process_time()
            a @ b
            if cuda:
                torch.cuda.synchronize()
                took = time.perf_counter() - t
            else:
                took = min(time.perf_counter() - t, (time.process_time() - c) / threads)
            best = max(best, 2 * n**3 / took / 1e9)
    return best


# ---------------------------------------------------------------------------------------- alignkit


def run_alignkit(args: argparse.Namespace, work: Path, model_dir: Path, device: str) -> dict:
    import alignkit.trainers.online_rl as online_rl
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
        "--reward.function", f"{Path(__file__).resolve()}:alignkit_reward",
        "--output_dir", str(out), "--train.max_steps", str(args.steps),
        "--train.batch_size", str(PROMPTS_PER_STEP), "--rollout.n_samples_per_prompt", str(GROUP),
        "--rollout.max_new_tokens", str(args.max_new_tokens), "--rollout.temperature", "1.0",
        "--train.micro_batch_size", str(args.micro_batch), "--algo.kl_coef", str(args.beta),
        "--algo.ppo_epochs", "1", "--algo.mini_batches", "1",
        "--train.lr", str(args.lr), "--logging.progress", "false", "--data.max_length", str(args.max_length),
        "--model.dtype", "float32", "--train.device", device, "--checkpoint.save_steps", "0",
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
              # Row width as alignkit's workers pack (workers/policy.py `capacity`: 0, the longest sequence).
              "slots": _packed_slots(lengths[i], args.micro_batch, 0),
              "breakdown": {k.split("/")[1]: r[k] for k in r if k.startswith("timing/")}}
             for i, r in enumerate(rows)]
    import alignkit

    return {"version": getattr(alignkit, "__version__", "?"), "startup_s": marks["train_start"] - _T0,
            "steps": steps, "reward_last": rows[-1].get("reward/mean", math.nan),
            "kl_last": rows[-1].get("kl", math.nan), "timed_from": args.warmup,
            "end_to_end_gaps_s": _gaps([r["elapsed_s"] for r in rows])[args.warmup - 1:],
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


# --------------------------------------------------------------------------------------------- TRL


def run_trl(args: argparse.Namespace, work: Path, model_dir: Path, device: str) -> dict:
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback, ProgressCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    records = [json.loads(line) for line in (work / "prompts.jsonl").read_text().splitlines() if line.strip()]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    meter = MemoryMeter(device)
    marks: dict[str, float] = {}
    begins: list[float] = []
    cpu_begins: list[float] = []
    cpu_ends: list[float] = []
    ends: list[float] = []
    rounds: list[tuple[list[str], list[int]]] = []  # per reward call: prompt texts, completion lengths
    seen: list[dict] = []  # TRL's per-step logs (reward, kl, ...)

    def reward(prompts, completions, completion_ids=None, **kw):  # the shared reward; it also notes lengths
        rounds.append((list(prompts), [len(c) for c in completion_ids]))
        return trl_reward(prompts, completions, **kw)

    reward.__name__ = "digit_share"

    class Clock(TrainerCallback):
        def on_train_begin(self, a, state, control, **kw):
            marks["train_start"] = time.perf_counter()
            meter.start()

        def on_step_begin(self, a, state, control, **kw):
            begins.append(time.perf_counter())
            cpu_begins.append(time.process_time())

        def on_step_end(self, a, state, control, **kw):
            ends.append(time.perf_counter())
            cpu_ends.append(time.process_time())

        def on_log(self, a, state, control, logs=None, **kw):
            if logs:
                seen.append(dict(logs))

        def on_train_end(self, a, state, control, **kw):
            meter.stop()

    class Phases(TrainerCallback):
        def __init__(self, store):
            self.store = store

        def on_step_begin(self, a, state, control, **kw):
            self.store.append(dict.fromkeys(("generate", "score", "logprobs"), 0.0))

    mb = args.trl_micro_batch or args.micro_batch
    accum = PROMPTS_PER_STEP * GROUP // mb
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    no_ckpt = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    config = GRPOConfig(
        output_dir=str(work / f"run_trl_{args.size}"),
        # A step: accum micro-batches of mb completions = 128 completions = 16 prompts x 8, all from ONE
        # generation round (steps_per_generation = accum, so generation_batch_size = mb x accum = 128).
        per_device_train_batch_size=mb, gradient_accumulation_steps=accum, steps_per_generation=accum,
        num_generations=GROUP, max_completion_length=args.max_new_tokens,
        temperature=1.0, top_p=1.0, top_k=0,
        beta=args.beta, num_iterations=1, epsilon=0.2, loss_type="grpo", scale_rewards="group",
        learning_rate=args.lr, max_steps=args.steps,
        adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.0, max_grad_norm=1.0,
        bf16=False, fp16=False, use_cpu=device == "cpu", model_init_kwargs={"dtype": "float32"},
        report_to=[], logging_steps=1, save_strategy="no", eval_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0, seed=42, **{no_ckpt: False},
    )
    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=[reward], args=config,
                          train_dataset=Dataset.from_list(records), processing_class=tokenizer,
                          callbacks=[Clock()])
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    phases: list[dict[str, float]] = []  # per step: seconds in generation, reward, no-grad log-prob forwards

    def timed(name, fn, only_no_grad=False):  # the same method; it also adds its run time to phases[-1][name]
        import torch

        def wrapper(*a, **kw):
            if only_no_grad and torch.is_grad_enabled():
                return fn(*a, **kw)
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                phases[-1][name] += time.perf_counter() - t
        return wrapper

    trainer._generate = timed("generate", trainer._generate)
    trainer._calculate_rewards = timed("score", trainer._calculate_rewards)
    trainer._get_per_token_logps_and_entropies = timed(
        "logprobs", trainer._get_per_token_logps_and_entropies, only_no_grad=True)
    trainer.add_callback(Phases(phases))
    assert trainer.ref_model is not None, "beta > 0 must give TRL a separate reference model"
    assert trainer.args.generation_batch_size == PROMPTS_PER_STEP * GROUP, trainer.args.generation_batch_size
    trainer.train()
    if len(ends) != args.steps or len(rounds) != args.steps:
        raise SystemExit(f"expected {args.steps} TRL steps and generation rounds, got {len(ends)} / {len(rounds)}")
    prompt_lens = [[len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in ps] for ps, _ in rounds]
    steps = [{"time_s": e - b, "cpu_s": cpu_ends[i] - cpu_begins[i], "completions": len(rounds[i][1]),
              "prompt_lens": prompt_lens[i],
              "response_lens": rounds[i][1],
              # TRL pads a generation batch to its longest prompt + longest completion; micro-batches slice it
              "slots": len(rounds[i][1]) * (max(prompt_lens[i]) + max(rounds[i][1])),
              "breakdown": phases[i] | {"train+rest": (e - b) - sum(phases[i].values())}}
             for i, (b, e) in enumerate(zip(begins, ends, strict=True))]
    last = [entry for entry in seen if "reward" in entry]
    return {"version": trl.__version__, "startup_s": marks["train_start"] - _T0, "steps": steps,
            "reward_last": last[-1]["reward"] if last else math.nan,
            "kl_last": last[-1].get("kl", math.nan) if last else math.nan, "timed_from": args.warmup,
            "end_to_end_gaps_s": _gaps(ends)[args.warmup - 1:],
            **meter.as_dict()}


# ------------------------------------------------------------------------------------------ driver


def run_one_side(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    work = Path(args.workdir)
    model_dir = work / f"model_{args.size}"
    result = (run_alignkit if args.side == "alignkit" else run_trl)(args, work, model_dir, device)
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
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if unknown := set(sides) - set(SIDES):
        raise SystemExit(f"unknown side(s) {sorted(unknown)}; choose from {SIDES}")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    import transformers

    from alignkit.config.schema import TinyModelConfig
    from alignkit.data.synth import make_records, write_jsonl
    from alignkit.models.tiny import build_tiny

    transformers.utils.logging.disable_progress_bar()
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
            build_tiny(TinyModelConfig(output=str(model_dir), **size_config(hidden, layers)))
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


def _gaps(ends: list[float]) -> list[float]:
    """Seconds between consecutive step ends (everything the loop did in between, logging included)."""
    return [b - a for a, b in zip(ends[:-1], ends[1:], strict=True)]


if __name__ == "__main__":
    main()
