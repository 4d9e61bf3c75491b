"""Peak memory of one SFT step whose log-probs span a large vocabulary (151936 on the GPU): setting.lp_samples
sequences of setting.lp_tokens tokens in one micro-batch, with the chunked log-prob path on (the default,
`--model.logprob_chunk_tokens 256`) and off (`0`: all the logits at once). The full path holds
(tokens x vocab) fp32 logits, 8 x 2048 x 151936 x 4 bytes = 9.3 GiB, and their gradient; the chunked one
a chunk at a time. Each mode is one `alignkit sft` step in this process; its peak is
torch.cuda.max_memory_allocated over the whole command (weights, gradients and AdamW state included, the
same in both modes), on the CPU the peak resident set."""

from __future__ import annotations

import gc
import random
import shutil

from partlib import Args, model_dir, part_main

from common import MemoryMeter


def run(a: Args) -> dict:
    from alignkit.data.synth import write_jsonl

    s = a.setting
    rng = random.Random(0)  # digits are one token each: a response of lp_tokens digits fills a sequence
    records = [{"prompt": "0", "response": "".join(rng.choice("0123456789") for _ in range(s.lp_tokens + 8))}
               for _ in range(s.lp_samples)]
    write_jsonl(records, a.work / "long.jsonl")
    modes = {"default": [], "off": ["--model.logprob_chunk_tokens", "0"]}
    figures = {"tokens": s.lp_samples * s.lp_tokens}
    peaks = {}
    for mode, flags in modes.items():
        base, peaks[mode] = step_memory_mib(a, mode, flags)
        figures |= {f"{mode}_peak_gib": peaks[mode] / 1024, f"{mode}_before_gib": base / 1024}
    figures["chunked_over_full"] = peaks["default"] / peaks["off"]
    return {"figures": figures, "summary": f"{figures['tokens']} tokens: peak {peaks['default'] / 1024:.2f} GiB chunked "
                                           f"vs {peaks['off'] / 1024:.2f} GiB full (x{figures['chunked_over_full']:.2f})"}


def step_memory_mib(a: Args, mode: str, flags: list[str]) -> tuple[float, float]:
    """Memory in use before one `alignkit sft` step over the long sequences (on the GPU: what an earlier
    mode left, ~0), and the peak of the command, in MiB."""
    import torch

    from alignkit.cli import main as alignkit

    s = a.setting
    out = a.work / f"sft_logprobs_{mode}"
    shutil.rmtree(out, ignore_errors=True)  # a rerun on a warm machine starts afresh
    meter = MemoryMeter(a.device)
    meter.start()
    rc = alignkit(["sft", "--model.path", str(model_dir(a.work)), "--data.train_files", str(a.work / "long.jsonl"),
                   "--output_dir", str(out), "--train.max_steps", "1",
                   "--train.batch_size", str(s.lp_samples), "--train.micro_batch_size", str(s.lp_samples),
                   "--data.max_length", str(s.lp_tokens), "--model.dtype", s.dtype, "--train.device", a.device,
                   "--logging.progress", "false", *flags])
    meter.stop()
    if rc:
        raise SystemExit(f"alignkit sft ({mode} log-prob path) exited with {rc}")
    gc.collect()
    if a.device == "cuda":
        torch.cuda.empty_cache()
    return meter.base_mib, meter.peak_mib


if __name__ == "__main__":
    part_main(run)
