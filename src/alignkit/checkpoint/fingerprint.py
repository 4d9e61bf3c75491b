"""Honest resume: each checkpoint records the command and the resolved config that wrote it
(`run.json`), and a resume that would mix in other training-relevant values is refused with the list of
fields, old -> new, unless the user allows them by name (`--resume_allow lr,max_steps`).

Compared are the fields that decide what is trained: the model, the data, the learning rate and its
schedule, batch sizes, the seed, the algorithm and its rewards. Not compared are the fields that only
say how and where the run executes or what it logs (OPERATIONAL): checkpoints are backend-neutral,
packing and prompt sharing compute the same numbers, micro-batches only bound memory. A few fields can
never change on resume (FIXED): the checkpoint's tensors mean something else under another value.
Fields that the checkpoint does not record (added to alignkit since it was written) are not compared.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from alignkit.errors import ConfigError

log = logging.getLogger("alignkit")

RUN_FILE = "run.json"

OPERATIONAL = (
    "output_dir", "resume", "resume_allow", "executor", "ray.", "policy.", "checkpoint.", "logging.",
    "train.device", "train.micro_batch_size", "train.micro_batch_tokens", "train.eval_steps", "eval.",
    "model.gradient_checkpointing", "model.attn_implementation",
    "data.packing", "data.share_prompt", "data.eval_files", "ref.precompute",
    "rollout.engine", "rollout.num_workers", "rollout.batch_size", "rollout.gpu_memory_utilization",
    "rollout.tensor_parallel_size",
    "reward.timeout_s", "reward.retries", "reward.batch_size", "reward.device", "reward.urls",
)  # fmt: skip

FIXED = {
    "model.lora.rank": "the saved adapter weights have its shapes",
    "model.lora.target_modules": "the saved adapter weights belong to those modules",
    "model.lora.alpha": "the saved adapter weights are scaled by it",
    "algo.advantage": "it decides whether a critic is trained, whose state the checkpoint holds or lacks",
}


def command_name(cfg: Any) -> str:
    """`alignkit <command>` of a run config: SFTConfig -> sft, DPOConfig -> dpo, RLConfig -> rl, ..."""
    return type(cfg).__name__.removesuffix("Config").lower()


def flat_values(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted field name -> value (as JSON reads it back) for every leaf of a nested config dataclass."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out |= flat_values(v, f"{prefix}{f.name}.")
        else:
            out[prefix + f.name] = json.loads(json.dumps(v))
    return out


def is_operational(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in OPERATIONAL)


def compared(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if not is_operational(k)}


def fingerprint(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(compared(values), sort_keys=True).encode()).hexdigest()


def run_record(cfg: Any) -> dict[str, Any]:
    """What a checkpoint records of its run (`run.json`)."""
    values = flat_values(cfg)
    return {"command": command_name(cfg), "fingerprint": fingerprint(values), "config": values}


def allowed(spec: str, keys: list[str]) -> set[str]:
    """The fields `--resume_allow` names: comma-separated dotted names (`train.lr`), sections (`reward`)
    or bare field names (`lr` is train.lr and, in RL, critic.lr)."""
    out: set[str] = set()
    for name in filter(None, (n.strip() for n in spec.split(","))):
        hits = {k for k in keys if k == name or k.startswith(name + ".") or k.rsplit(".", 1)[-1] == name}
        if not hits:
            close = difflib.get_close_matches(name, keys + sorted({k.rsplit(".", 1)[-1] for k in keys}), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"--resume_allow: '{name}' names no config field{hint}")
        if name in FIXED:
            raise ConfigError(f"--resume_allow: {name} cannot change on resume: {FIXED[name]}")
        out |= hits - FIXED.keys()
    return out


def check_resume(cfg: Any, ckpt: Path, record: dict[str, Any]) -> None:
    """Refuse to resume `cfg` from `ckpt` (whose `run.json` is `record`) when another command wrote it or a
    compared field differs and is not allowed by `cfg.resume_allow`; log each allowed change."""
    mine = command_name(cfg)
    if record.get("command") != mine:
        raise ConfigError(f"--resume: {ckpt} was written by `alignkit {record.get('command')}`, and this is "
                          f"`alignkit {mine}`: a checkpoint resumes only the command that wrote it "
                          "(choose another --output_dir)")
    now = flat_values(cfg)
    if record.get("fingerprint") == fingerprint(now):
        return
    old = compared(record.get("config", {}))
    changed = [(k, old[k], now.get(k)) for k in sorted(old) if k in now and old[k] != now[k]]
    ok = allowed(cfg.resume_allow, sorted(now))
    refused = [c for c in changed if c[0] not in ok]
    fixed = [c for c in refused if c[0] in FIXED]
    if fixed:
        k = fixed[0][0]
        raise ConfigError(f"--resume: {k} cannot change on resume ({json.dumps(fixed[0][1])} -> {json.dumps(fixed[0][2])}): "
                          f"{FIXED[k]}; start a new --output_dir")
    if refused:
        lines = "\n".join(f"  {k}: {json.dumps(a)} -> {json.dumps(b)}" for k, a, b in refused)
        names = ",".join(k for k, _, _ in refused)
        raise ConfigError(f"--resume: {ckpt} was written with other values of fields that change what is trained:\n"
                          f"{lines}\nresume with the checkpoint's values, allow the changes with --resume_allow {names}, "
                          "or start a new --output_dir")
    for k, a, b in changed:
        log.warning("resuming with %s changed: %s -> %s (allowed by --resume_allow)", k, json.dumps(a), json.dumps(b))
