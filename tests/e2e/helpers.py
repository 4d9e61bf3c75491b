"""Running alignkit commands in-process, as a user would from the shell."""

from __future__ import annotations

from alignkit.cli import main
from alignkit.data.synth import make_records, write_jsonl


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
