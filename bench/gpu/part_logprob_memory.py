"""Peak memory of one SFT step whose log-probs span a large vocabulary (151936 on the GPU): setting.lp_samples
sequences of setting.lp_tokens tokens in one micro-batch, with the chunked log-prob path (issue 11) on and
off. The full path holds (tokens x vocab) fp32 logits, 8 x 2048 x 151936 x 4 bytes = 9.3 GiB, and their
gradient; the chunked one a chunk at a time. Each mode is one `alignkit sft` step in this process; its
peak is torch.cuda.max_memory_allocated over the whole command (weights, gradients and AdamW state
included, the same in both modes), on the CPU the peak resident set.

The switch is `--chunk-switch SECTION.FIELD=OFF` (default CHUNK_SWITCH below). Where the config has no such
field yet, only the default path is measured and the part says so (status skipped)."""

from __future__ import annotations

import gc
import random
import shutil
import typing
from dataclasses import fields

from partlib import Args, model_dir, part_main

from common import MemoryMeter

# Issue 11's switch (branch i11-chunk) and the value that turns the chunked path off. Its name was not final
# when the kit was written: once it lands, adapt this line (or pass --chunk-switch to scripts/gpu_check.sh).
CHUNK_SWITCH = "model.chunked_logprobs=false"


def options(p) -> None:
    p.add_argument("--chunk-switch", default=CHUNK_SWITCH,
                   help="SECTION.FIELD=OFF: the config field of the chunked log-prob path and its 'off' value")


def switch_exists(spec: str) -> bool:
    """Whether `spec`'s SECTION.FIELD is a field of the SFT command's config."""
    from alignkit.config.schema import SFTConfig

    section, _, name = spec.partition("=")[0].partition(".")
    hints = typing.get_type_hints(SFTConfig)
    return section in hints and name in {f.name for f in fields(hints[section])}


def run(a: Args) -> dict:
    from alignkit.data.synth import write_jsonl

    s = a.setting
    rng = random.Random(0)  # digits are one token each: a response of lp_tokens digits fills a sequence
    records = [{"prompt": "0", "response": "".join(rng.choice("0123456789") for _ in range(s.lp_tokens + 8))}
               for _ in range(s.lp_samples)]
    write_jsonl(records, a.work / "long.jsonl")
    key, _, off = a.chunk_switch.partition("=")
    modes = {"default": []}
    if switch_exists(a.chunk_switch):
        modes["off"] = [f"--{key}", off]
    figures = {"tokens": s.lp_samples * s.lp_tokens, "switch": a.chunk_switch}
    peaks = {}
    for mode, flags in modes.items():
        base, peaks[mode] = step_memory_mib(a, mode, flags)
        figures |= {f"{mode}_peak_gib": peaks[mode] / 1024, f"{mode}_before_gib": base / 1024}
    if "off" not in peaks:
        reason = (f"--{key} is not a config field yet (issue 11's chunked path; adapt CHUNK_SWITCH in "
                  f"bench/gpu/part_logprob_memory.py): default path only, peak {peaks['default'] / 1024:.2f} GiB")
        return {"status": "skipped", "reason": reason, "summary": reason, "figures": figures}
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
    part_main(run, options)
