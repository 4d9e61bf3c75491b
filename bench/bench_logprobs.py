"""Token log-probs at large vocabularies: peak memory and step time of alignkit's full-logits path, its
chunked LM head (models/chunked_head.py) and TRL's fused LM head, side by side in one run.

Every side trains the same random Llama (`--hidden` x `--layers`, untied output layer, vocabulary V,
built from a config with seed 0 in each process) on the same `ROWSxSEQ` random tokens, every token a
target but each row's first: one step is the forward, the token log-probs, their mean negative
log-likelihood, the backward and an AdamW step, in fp32 (`--dtype bfloat16`: the model in bf16).
- `full`: alignkit's `causal_forward` with `--model.logprob_chunk_tokens 0`, the (tokens x vocab) fp32
  logits at once (alignkit's only path before the chunked head).
- `chunked`: the same call through the chunked head, `--chunk` tokens at a time (default: the config's).
- `trl`: TRL's `add_fused_lm_head` (what its SFT, DPO, KTO and GRPO trainers use):
  `model(input_ids, labels=input_ids, fused_lm_head=True).loss`.
Each (vocabulary, shape, side) runs in its own fresh Python process. The memory the full path would need
is estimated first (4.5 x its fp32 logits, tokens x V x 4 bytes: it measured 4.2 x at 1 x 2048 tokens); where
that exceeds `--mem-limit-gb` it is not run and the table says so.

Peak memory: on CPU, the highest resident set (VmHWM, reset through /proc/self/clear_refs once the model,
optimizer and batch exist) minus the resident set at that moment; gradients and AdamW state (made in the
first step) are inside it. On CUDA, `max_memory_allocated` minus the memory allocated at that moment.
Step time: the median wall time of the steps after `--warmup`, and the median CPU time of the process
(user + system, all threads) over the same steps, which other load on a shared machine disturbs less.

    pip install -e '.[bench]'
    python bench/bench_logprobs.py                                  # 152k and 262k, 1x2048 and 8x2048
    python bench/bench_logprobs.py --vocabs 152064 --shapes 2x512 --sides full,chunked
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    MemoryMeter,
    chosen_sides,
    comma_list,
    machine,
    resolve_device,
    run_side,
    table,
    without,
)

SIDES = ("full", "chunked", "trl")


def parse_shape(text: str) -> tuple[int, int]:
    rows, _, seq = text.lower().partition("x")
    return int(rows), int(seq)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="The setting and the measurements are explained in bench/README.md.")
    p.add_argument("--vocabs", default="152064,262144", help="comma-separated vocabulary sizes (default: %(default)s)")
    p.add_argument("--shapes", default="1x2048,8x2048", help="comma-separated ROWSxSEQ token batches (default: %(default)s)")
    p.add_argument("--hidden", type=int, default=64, help="hidden size (default: %(default)s)")
    p.add_argument("--layers", type=int, default=1, help="transformer layers (default: %(default)s)")
    p.add_argument("--chunk", type=int, default=0, help="tokens per chunk of the chunked side (0: the config default)")
    p.add_argument("--steps", type=int, default=3, help="training steps per run (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=1, help="first steps left out of the timing (default: %(default)s)")
    p.add_argument("--mem-limit-gb", type=float, default=0.0,
                   help="skip the full path where its estimate (GiB) exceeds this (0: 60%% of the memory available now)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="model dtype (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per run (0: torch's default)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: cuda when available (default: %(default)s)")
    p.add_argument("--sides", default=",".join(SIDES), help="comma-separated sides, in this order (default: %(default)s)")
    p.add_argument("--json", default="", help="also write the results as JSON to this file")
    p.add_argument("--side", choices=SIDES, help="internal: run only this side in this process")
    p.add_argument("--vocab", type=int, help="internal: the vocabulary of this process")
    p.add_argument("--shape", help="internal: the ROWSxSEQ of this process")
    p.add_argument("--result", help="internal: where --side writes its JSON result")
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps <= args.warmup:
        p.error("need 1 <= --warmup < --steps")
    return args


# ------------------------------------------------------------------------------------------- one side


def build(vocab: int, hidden: int, layers: int, seq: int, device: str, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    heads = max(2, hidden // 32)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads // 2, max_position_embeddings=seq,
                      tie_word_embeddings=False)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").to(device, getattr(torch, dtype))


def step_fn(side: str, model, ids, chunk: int):
    """A function running one forward and returning the mean NLL of every row's tokens but the first."""
    if side == "trl":
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model)
        return lambda: model(input_ids=ids, labels=ids, fused_lm_head=True).loss

    from alignkit.algos.losses.sft import sft_loss
    from alignkit.config.schema import ModelConfig
    from alignkit.data.packing import pack
    from alignkit.data.samples import TokenizedSample
    from alignkit.models.forward import causal_logprobs
    from alignkit.models.lm_head import chunked_head, enable_chunked_logprobs

    enable_chunked_logprobs(model, 0 if side == "full" else chunk or ModelConfig().logprob_chunk_tokens)
    assert (chunked_head(model) is None) == (side == "full")
    rows, seq = ids.shape
    batch = pack([TokenizedSample(r.tolist(), [1] * seq, "bench") for r in ids.cpu()], pad_id=0,
                 capacity=seq).to(ids.device)
    assert batch.input_ids.shape == ids.shape
    denom = float(rows * (seq - 1))
    return lambda: sft_loss(causal_logprobs(model, batch), batch.loss_mask, denom)[0]


def run_one_side(args: argparse.Namespace) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rows, seq = parse_shape(args.shape)
    model = build(args.vocab, args.hidden, args.layers, seq, device, args.dtype)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(0, args.vocab, (rows, seq), generator=torch.Generator().manual_seed(1)).to(device)
    forward = step_fn(args.side, model, ids, args.chunk)
    meter = MemoryMeter(device)
    meter.start()
    times, cpu, losses = [], [], []
    for _ in range(args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = forward()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    meter.stop()
    version = "alignkit" if args.side != "trl" else __import__("trl").__version__
    return meter.as_dict() | {"median_step_s": statistics.median(times[args.warmup:]), "step_s": times,
                              "median_cpu_s": statistics.median(cpu[args.warmup:]),
                              "first_loss": losses[0], "version": version, "threads": torch.get_num_threads()}


# ---------------------------------------------------------------------------------------------- driver


def available_gb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def full_estimate_gb(vocab: int, tokens: int) -> float:
    """4.5 x the full path's fp32 logits: the logits, logsumexp's exponentials, their gradient and the
    step's other tensors measured 4.2 x the logits at 1 x 2048 tokens."""
    return 4.5 * tokens * vocab * 4 / 2**30


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.side:
        Path(args.result).write_text(json.dumps(run_one_side(args)))
        return
    sides = chosen_sides(args.sides, SIDES)
    device = resolve_device(args.device)
    limit = args.mem_limit_gb or 0.6 * (available_gb() if device == "cpu" else 1e9)
    child = without(list(argv if argv is not None else sys.argv[1:]), "--json", "--vocabs", "--shapes", "--sides")
    print(f"Token log-probs: random Llama {args.hidden}x{args.layers} (untied head), {args.dtype}, {device}, "
          f"{args.steps} steps ({args.warmup} warm-up); {machine()}" + (f"; --threads {args.threads}" if args.threads else "")
          + f"; full path skipped above {limit:.1f} GiB; load average {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    for vocab in (int(v) for v in comma_list(args.vocabs)):
        for shape in comma_list(args.shapes):
            rows, seq = parse_shape(shape)
            for side in sides:
                row = {"vocab": vocab, "shape": shape, "side": side}
                need = full_estimate_gb(vocab, rows * seq)
                if side == "full" and need > limit:
                    results.append(row | {"skipped": f"needs ~{need:.0f} GiB"})
                    print(f"  {vocab:>7} {shape:>7} {side:>8}: skipped (needs ~{need:.1f} GiB)", flush=True)
                    continue
                res = run_side(Path(__file__).resolve(), side,
                               [*child, "--vocab", str(vocab), "--shape", shape], timeout=3600)
                results.append(row | res)
                print(f"  {vocab:>7} {shape:>7} {side:>8}: peak {res['mem_delta_mib']:8.0f} MiB, "
                      f"median step {res['median_step_s']:6.2f} s ({res['median_cpu_s']:6.2f} CPU s), "
                      f"first loss {res['first_loss']:.4f}", flush=True)
    print(report(results, args))
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (1 min), {os.getloadavg()[2]:.1f} (15 min)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


def report(results: list[dict], args: argparse.Namespace) -> str:
    headers = ["vocab", "tokens", "side", "peak mem MiB", "median step s", "CPU s", "first loss", "vs full mem",
               "vs trl mem", "vs trl time", "vs trl CPU"]
    by = {(r["vocab"], r["shape"], r["side"]): r for r in results}
    rows = []
    for r in results:
        if "skipped" in r:
            rows.append([r["vocab"], r["shape"], r["side"], r["skipped"], *["-"] * 7])
            continue
        ratios = []
        for other, key in (("full", "mem_delta_mib"), ("trl", "mem_delta_mib"), ("trl", "median_step_s"),
                           ("trl", "median_cpu_s")):
            o = by.get((r["vocab"], r["shape"], other))
            ratios.append(f"x{r[key] / o[key]:.2f}" if o and "skipped" not in o and r["side"] != other else "-")
        rows.append([r["vocab"], r["shape"], r["side"], f"{r['mem_delta_mib']:.0f}", r["median_step_s"],
                     r["median_cpu_s"], f"{r['first_loss']:.4f}", *ratios])
    mem_kind = "allocated CUDA memory" if resolve_device(args.device) == "cuda" else "resident set (VmHWM)"
    note = (f"peak mem: the highest {mem_kind} over {args.steps} training steps (forward, log-probs, mean NLL, "
            f"backward, AdamW) minus the {mem_kind.split(' (')[0]} at their start, each run in its own process; "
            f"median step s and CPU s (this process, all threads): over the steps after the first {args.warmup}. "
            f"x: this side / the other.")
    return table(headers, rows, floatfmt=".2f") + "\n" + note


if __name__ == "__main__":
    main()
