"""Small helpers shared by the side-by-side benchmarks in bench/.

- `build_model`, `write_pairs`: the tiny offline model and synthetic data both sides train on;
  `parse_size`, `size_config`: a `HIDDENxLAYERS` model size and its attention heads.
- `resolve_device`: `--device auto|cpu|cuda` as a torch device name.
- `run_side`: run one side of a comparison in a fresh interpreter (`python SCRIPT --side NAME ...`),
  so each side's imports, allocations and thread pools never warm or pollute the other's, and read
  back the JSON it wrote.
- `MemoryMeter`: peak memory of the training loop alone, above what start-up left allocated.
- `steady_rate`, `step_gaps`: items/s and step times between step ends, after warm-up steps.
- `table`: a plain-text table.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch


def build_model(folder: str | Path, hidden: int, layers: int, **config) -> Path:
    """A tiny random Llama + tokenizer (alignkit's offline factory) in Hugging Face format; `config`:
    more `TinyModelConfig` fields (heads, kv_heads, ...)."""
    import transformers

    from alignkit.config.schema import TinyModelConfig
    from alignkit.models.tiny import build_tiny

    transformers.utils.logging.disable_progress_bar()

    return Path(build_tiny(TinyModelConfig(output=str(folder), hidden=hidden, layers=layers, **config)))


def parse_size(s: str) -> tuple[int, int]:
    """`HIDDENxLAYERS` (e.g. `512x4`) -> (hidden, layers)."""
    hidden, _, layers = s.lower().partition("x")
    return int(hidden), int(layers)


def size_config(hidden: int, layers: int) -> dict:
    """`TinyModelConfig` fields of a size: heads = hidden / 64 (at least 2), kv heads = heads / 2."""
    heads = max(2, hidden // 64)
    return dict(hidden=hidden, layers=layers, heads=heads, kv_heads=max(1, heads // 2))


def write_pairs(path: str | Path, n: int, task: str = "sort", seed: int = 0) -> list[dict]:
    """`n` synthetic preference pairs (prompt/chosen/rejected, plain text) written as JSON lines."""
    from alignkit.data.synth import make_records, write_jsonl

    records = make_records(task, "pair", n, seed)
    write_jsonl(records, path)
    return records


def resolve_device(name: str) -> str:
    """`auto` -> cuda when available, else cpu; `cpu` and `cuda` as they are."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def run_side(script: str | Path, side: str, args: Sequence[str], timeout: float = 1800) -> dict:
    """Run `python script --side side --result FILE *args` in a fresh interpreter; its JSON result.
    The child's output is kept out of the way and shown only when it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, str(script), "--side", side, "--result", str(result), *args]
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0 or not result.exists():
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
            raise RuntimeError(f"side '{side}' failed (exit {proc.returncode}): {' '.join(cmd)}")
        return json.loads(result.read_text())


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


class MemoryMeter:
    """Peak memory between `start()` and `stop()`, minus what was in use at `start()`.

    CUDA: `torch.cuda.max_memory_allocated` after a reset of the peak statistics. CPU (Linux): the
    process's peak resident set (VmHWM), reset at `start()` through /proc/self/clear_refs so that
    start-up peaks (model loading, tokenization) do not count; where that reset is refused, the
    lifetime peak (`ru_maxrss`) is used and `exact` is False.
    """

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.exact = True
        self.base_mib = 0.0
        self.peak_mib = 0.0

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base_mib = torch.cuda.memory_allocated() / 2**20
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        except OSError:
            self.exact = False
        self.base_mib = _proc_status_kib("VmRSS") / 1024

    def stop(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak_mib = torch.cuda.max_memory_allocated() / 2**20
        elif self.exact:
            self.peak_mib = _proc_status_kib("VmHWM") / 1024
        else:
            import resource

            self.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def as_dict(self) -> dict:
        return {"mem_base_mib": self.base_mib, "mem_peak_mib": self.peak_mib,
                "mem_delta_mib": self.peak_mib - self.base_mib, "mem_exact": self.exact}


def steady_rate(step_ends: Sequence[float], per_step: Sequence[float], warmup: int) -> dict:
    """Throughput between the end of step `warmup` and the end of the last step.

    `step_ends[i]` is the clock (seconds) at the end of step i+1; `per_step[i]` what step i+1
    processed (pairs, tokens). Each interval between step ends holds everything the loop does per
    step (fetching/collating the batch, forward, backward, optimizer, logging), and nothing of
    start-up. Returns the timed steps, their seconds, items/s and the median step time.
    """
    if warmup < 1:
        raise ValueError("warmup must be at least 1: the first step has no earlier step end to time from")
    if len(step_ends) <= warmup:
        raise ValueError(f"{len(step_ends)} steps leave nothing to time after {warmup} warm-up steps")
    ends = list(step_ends)
    gaps = step_gaps(ends, warmup)
    seconds = ends[-1] - ends[warmup - 1]
    items = sum(per_step[warmup : len(ends)])
    return {"steps": len(gaps), "seconds": seconds, "rate": items / seconds, "items": items,
            "median_step_s": statistics.median(gaps)}


def step_gaps(step_ends: Sequence[float], warmup: int = 1) -> list[float]:
    """Seconds between consecutive step ends, from the end of step `warmup` on: each holds everything
    the loop did for one step (logging included)."""
    return [step_ends[i] - step_ends[i - 1] for i in range(warmup, len(step_ends))]


def machine() -> str:
    """One line: CPU cores, torch threads, torch version and the accelerator if any."""
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} CPU cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}{gpu}"


def table(headers: Sequence[str], rows: Sequence[Sequence], floatfmt: str = ".1f") -> str:
    """Right-aligned plain-text table; floats formatted with `floatfmt`."""
    cells = [[format(c, floatfmt) if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def comma_list(text: str) -> list[str]:
    """`"a, b,,c"` -> `["a", "b", "c"]`: a comma-separated command-line value."""
    return [s.strip() for s in text.split(",") if s.strip()]


def chosen_sides(text: str, known: Sequence[str]) -> list[str]:
    """The `--sides` to run, in the order given; exits naming any unknown one."""
    sides = comma_list(text)
    if unknown := set(sides) - set(known):
        raise SystemExit(f"unknown side(s) {sorted(unknown)}; choose from {tuple(known)}")
    return sides


def without(argv: list[str], *flags: str) -> list[str]:
    """`argv` minus the given flags and their values (`--flag value` or `--flag=value`)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        elif not any(a.startswith(f + "=") for f in flags):
            out.append(a)
    return out
