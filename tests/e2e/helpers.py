"""Running alignkit commands in-process, as a user would from the shell."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import TYPE_CHECKING

from alignkit.cli import main
from alignkit.data.synth import make_records, write_jsonl

if TYPE_CHECKING:
    import torch


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def synth(path, task="arithmetic", kind="sft", n=256, seed=0):
    write_jsonl(make_records(task, kind, n, seed), path)
    return path


def common_flags(model, data, out, steps, **extra):
    flags = [
        "--model.path", model, "--data.train_files", data, "--output_dir", out, "--train.max_steps", steps,
        "--train.batch_size", 16, "--train.micro_batch_size", 8, "--data.max_length", 48, "--logging.progress", "false",
    ]
    for k, v in extra.items():
        flags += [f"--{k}", v]
    return flags


SEVENS = '''
def sevens(prompts, responses, labels):
    """Share of '7' characters: varies across samples of a random model and is easy to learn."""
    return [r.count("7") / max(len(r), 1) for r in responses]
'''


def rl_flags(model, tmp_path, steps, **extra):
    """Flags for a tiny, fast `alignkit rl` run rewarded by the share of '7's in the response."""
    prompts = synth(tmp_path / "prompts.jsonl", kind="prompt", n=64)
    fn = tmp_path / "reward_fn.py"
    fn.write_text(SEVENS)
    flags = [
        "--model.path", model, "--data.train_files", prompts, "--output_dir", tmp_path / "rl",
        "--train.max_steps", steps, "--train.batch_size", 4, "--train.micro_batch_size", 16,
        "--rollout.n_samples_per_prompt", 4, "--rollout.max_new_tokens", 6, "--train.lr", 1e-3,
        "--reward.function", f"{fn}:sevens", "--logging.progress", "false", "--data.max_length", 16,
    ]
    for k, v in extra.items():
        flags += [f"--{k}", v]
    return flags


STALLS = SEVENS + '''
import time
from pathlib import Path


def stalls(prompts, responses, labels):
    """The reward of SEVENS; its second call writes a marker file and stalls for STALL_S seconds."""
    here = Path(__file__)
    if here.with_suffix(".first").exists():
        here.with_suffix(".stalling").touch()
        time.sleep(STALL_S)
    here.with_suffix(".first").touch()
    return sevens(prompts, responses, labels)
'''


def stalling_reward(path, seconds: float) -> str:
    """Write STALLS to `path` (its second call stalls `seconds`); the --reward.function spec. Its marker
    file `path.with_suffix('.stalling')` appears when the stall begins."""
    path.write_text(f"STALL_S = {seconds}\n" + STALLS)
    return f"{path}:stalls"


def signal_when(condition, signum: int = signal.SIGTERM, timeout_s: float = 300) -> None:
    """Send this process `signum` (a real signal, as a scheduler sends it) once `condition()` holds; give up
    silently after `timeout_s`."""

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        os.kill(os.getpid(), signum)

    threading.Thread(target=watch, daemon=True).start()


def interrupt_on_call(monkeypatch, cls, method: str, n: int) -> None:
    """Make the n-th call of `cls.method` raise KeyboardInterrupt (Ctrl-C in the middle of a run)."""
    real, calls = getattr(cls, method), []

    def wrapped(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, wrapped)


def spans(mask_row: torch.Tensor) -> list[tuple[int, int]]:
    """The [start, end) runs of 1s in a 0/1 row: the model's turns."""
    out, start = [], None
    for t, v in enumerate([*mask_row.tolist(), 0]):
        if v and start is None:
            start = t
        elif not v and start is not None:
            out.append((start, t))
            start = None
    return out
