"""Generation throughput: alignkit's HFEngine against transformers' `model.generate`, same batch.

Builds tiny random Llama models offline, generates for P prompts x n samples, and prints generated
tokens/s for each side and their ratio (alignkit / transformers). Tokens counted are those a caller
keeps: up to and including EOS, never the padding `generate` adds after it.

Cases: `sample` (temperature 1, no top-k/top-p), `greedy` (the prompts repeated n times for
`generate`, which has no greedy n), and `sample+eos`: a random model almost never emits its EOS, so
EOS is set to the most frequent tokens the model samples, together about `--eos-rate` of them; rows
then finish at different steps, which is where dropping finished rows pays.

    python bench/bench_generate.py                     # both models, all cases
    python bench/bench_generate.py --models 128x2 --repeats 5
    python bench/bench_generate.py --model-dir runs/qwen --device cuda --dtype bfloat16 --cases sample --json r.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignkit.config.sampling import SamplingParams
from alignkit.config.schema import TinyModelConfig
from alignkit.models.tiny import build_tiny
from alignkit.rollout.hf import HFEngine

_TEXTS = ["12+7=", "sort: 4 1 3 =", "reverse: abcde =", "What is the answer to the question", "hello"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="128x2,512x4", help="comma-separated hidden x layers")
    parser.add_argument("--prompts", type=int, default=16, help="distinct prompts")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument(
        "--eos-rate", type=float, default=0.04, help="sample+eos: EOS tokens' share of samples"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--model-dir", default="", help="a model folder to use instead of building --models")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--cases", default="sample,greedy,sample+eos", help="comma-separated cases")
    parser.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"{args.prompts} prompts x n={args.n}, max {args.max_new_tokens} new tokens, {args.dtype} on "
        f"{args.device}, {torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print(
        f"{'model':>8} {'case':>11} {'mean len':>8} {'alignkit tok/s':>15} {'generate tok/s':>15} {'ratio':>6}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in [args.model_dir] if args.model_dir else args.models.split(","):
            if args.model_dir:
                folder, spec = Path(args.model_dir), Path(args.model_dir).name
            else:
                hidden, layers = (int(x) for x in spec.split("x"))
                folder = build_tiny(TinyModelConfig(output=str(Path(tmp) / spec), hidden=hidden, layers=layers))
            dtype = getattr(torch, args.dtype)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(args.device).eval()
            tokenizer = AutoTokenizer.from_pretrained(folder)
            prompts = [
                tokenizer(_TEXTS[i % len(_TEXTS)] + " " * (i % 3))["input_ids"] for i in range(args.prompts)
            ]
            for case in args.cases.split(","):
                if case == "sample+eos":
                    model.generation_config.eos_token_id = _frequent_tokens(model, tokenizer, prompts, args)
                ours, theirs, mean_len = _compare(model, tokenizer, prompts, case, args)
                print(
                    f"{spec:>8} {case:>11} {mean_len:8.1f} {ours:15.0f} {theirs:15.0f} {ours / theirs:6.2f}"
                )
                rows.append({"model": spec, "case": case, "completions": args.prompts * args.n,
                             "mean_len": mean_len, "alignkit_tok_s": ours, "generate_tok_s": theirs,
                             "ratio": ours / theirs})
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


def _compare(model, tokenizer, prompts, case: str, args) -> tuple[float, float, float]:
    """(alignkit tok/s, generate tok/s, mean kept length) for one case."""
    greedy = case == "greedy"
    params = SamplingParams(
        n=args.n, temperature=0.0 if greedy else args.temperature, max_new_tokens=args.max_new_tokens, seed=0
    )
    engine = HFEngine(model, tokenizer)
    eos = set(_as_list(model.generation_config.eos_token_id)) | {tokenizer.eos_token_id}

    def ours() -> int:
        return sum(len(g.response_ids) for g in engine.generate(prompts, params))

    rows = [p for p in prompts for _ in range(args.n)] if greedy else prompts
    ids, mask = (t.to(model.device) for t in _left_pad(rows, tokenizer.pad_token_id))
    sampling = (
        {"do_sample": False}
        if greedy
        else {
            "do_sample": True,
            "temperature": args.temperature,
            "top_k": 0,
            "top_p": 1.0,
            "num_return_sequences": args.n,
        }
    )

    def theirs() -> int:
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=args.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            **sampling,
        )
        return sum(_kept(row, eos) for row in out[:, ids.shape[1] :].tolist())

    ours_rate, tokens = _rate(ours, args.repeats)
    theirs_rate, _ = _rate(theirs, args.repeats)
    return ours_rate, theirs_rate, tokens / (len(prompts) * args.n)


def _rate(run: Callable[[], int], repeats: int) -> tuple[float, int]:
    """Median tokens/s over `repeats` timed runs after one warm-up; also the tokens of the last run."""
    run()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = run()
        rates.append(tokens / (time.perf_counter() - start))
    return statistics.median(rates), tokens


def _frequent_tokens(model, tokenizer, prompts, args) -> list[int]:
    """The most frequently sampled tokens, just enough of them to make up `--eos-rate` of the samples."""
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    params = SamplingParams(
        n=args.n, temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=1
    )
    counts = Counter(t for g in HFEngine(model, tokenizer).generate(prompts, params) for t in g.response_ids)
    total, chosen, mass = sum(counts.values()), [], 0
    for token, count in counts.most_common():
        if mass >= args.eos_rate * total:
            break
        chosen.append(token)
        mass += count
    return chosen


def _kept(row: list[int], eos: set[int]) -> int:
    """Tokens up to and including the first EOS (all of them when none)."""
    return next((i + 1 for i, t in enumerate(row) if t in eos), len(row))


def _left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, width) ids and attention mask, padded on the left."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    return ids, mask


def _as_list(value) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


if __name__ == "__main__":
    main()
