"""Checkpoints for exact resume: trainable weights, optimizer, scheduler, RNG states, data position.

Layout of `checkpoints/step_N/`: `<role>.safetensors` per trained model (`model` for the supervised
trainers; `policy` and `critic` for online RL), holding trainable parameters only (frozen weights never
change, so the base model folder restores them); `trainer_state.pt`, each role's optimizer and
scheduler state and the RNG states, all tensors and plain data; `trainer_state.json`, the step, the
data position and anything the trainer adds (such as a KL controller's state); `run.json`, the command
and config that wrote it (fingerprint.py); `manifest.json`, every file's size and checksum
(manifest.py). Weights and optimizer state are full (unsharded) and keyed by parameter name, the one
form every training backend writes and reads (backends/base.py), so a checkpoint resumes under any
backend on any number of workers.

Loading runs no code: safetensors holds tensors only, `trainer_state.pt` is read with
`torch.load(weights_only=True)`, which refuses any pickled object but tensors and plain data, and the
rest is JSON.
"""

from __future__ import annotations

import json
import logging
import pickle
import random
import re
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from alignkit.checkpoint.atomic import atomic_dir
from alignkit.checkpoint.fingerprint import RUN_FILE, check_resume
from alignkit.checkpoint.manifest import DamagedCheckpoint, verify, write_manifest
from alignkit.errors import AlignkitError
from alignkit.runtime.disk import save_torch, writing

log = logging.getLogger("alignkit")

_STEP = re.compile(r"^step_(\d+)$")
STATE_FILE = "trainer_state.pt"
TRAINER_FILE = "trainer_state.json"


@dataclass
class TrainerState:
    """Where training stands; enough, with the weights and optimizer, to continue exactly."""

    step: int = 0
    epoch: int = 0
    sample_offset: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def rng_state() -> dict[str, Any]:
    """Python's, NumPy's, torch's (and CUDA's) generator states as tensors and plain values."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, torch.tensor(mt, dtype=torch.int64), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(
    ckpt_dir: Path, weights: dict[str, dict[str, torch.Tensor]], backend_states: dict[str, Any], state: TrainerState,
    keep: int, record: dict[str, Any],
) -> Path:
    """Write `step_N/` from each role's full trainable weights and backend state (`TrainBackend.
    trainable_weights` and `state_dict`, gathered from the workers that hold them) and the run's
    `record` (fingerprint.run_record); keep the newest `keep`."""
    path = ckpt_dir / f"step_{state.step}"
    with writing(path, "checkpoint"), atomic_dir(path) as tmp:
        for role, w in weights.items():
            save_file(w, str(tmp / f"{role}.safetensors"))
        save_torch({"backends": backend_states, "rng": rng_state()}, tmp / STATE_FILE)
        (tmp / TRAINER_FILE).write_text(json.dumps(asdict(state)))
        (tmp / RUN_FILE).write_text(json.dumps(record, indent=1))
        write_manifest(tmp)
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoint folders, oldest first (temporary folders of an interrupted save are ignored)."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _STEP.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def newest_whole(ckpt_dir: Path) -> Path | None:
    """The newest checkpoint that matches its manifest; each damaged newer one is skipped with a warning.
    None when there is none; an error when every one is damaged."""
    found = list_checkpoints(ckpt_dir)
    problems = []
    for p in reversed(found):
        try:
            verify(p)
        except DamagedCheckpoint as e:
            problems.append(str(e))
            log.warning("checkpoint %s is damaged (%s); trying the one before it", p.name, e)
            continue
        if problems:
            log.warning("resuming from %s, the newest whole checkpoint", p)
        return p
    if problems:
        raise DamagedCheckpoint(f"--resume: every checkpoint in {ckpt_dir} is damaged; the newest: {problems[0]}")
    return None


def resolve_resume(resume: str, ckpt_dir: Path) -> Path | None:
    """'' -> None; 'latest'/'true' -> the newest whole checkpoint under ckpt_dir (None if there is none);
    anything else is a checkpoint path that must exist and be whole."""
    if not resume or resume.lower() in {"false", "no"}:
        return None
    if resume.lower() in {"latest", "true", "yes"}:
        return newest_whole(ckpt_dir)
    p = Path(resume)
    if not (p / STATE_FILE).is_file():
        raise AlignkitError(f"--resume {resume}: not a checkpoint folder (no {STATE_FILE})")
    verify(p)
    return p


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DamagedCheckpoint(f"{path}: cannot be read ({e})") from None


def resume_point(cfg: Any, ckpt_dir: Path) -> Path | None:
    """The checkpoint `cfg.resume` names, whole, and written by this command with a config that differs
    only where the user allows it (`fingerprint.check_resume`)."""
    path = resolve_resume(cfg.resume, ckpt_dir)
    if path is not None:
        check_resume(cfg, path, _json(path / RUN_FILE))
    return path


def read_state(path: Path, roles: list[str]) -> tuple[TrainerState, dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """The trainer state, each role's trainable weights and the backends' states; restores the RNG states."""
    weights = {}
    for role in roles:
        file = path / f"{role}.safetensors"
        if not file.is_file():
            raise AlignkitError(f"checkpoint {path} has no weights for '{role}' ({file.name})")
        weights[role] = load_file(str(file))
    file = path / STATE_FILE
    try:
        blob = torch.load(file, weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL (\S+)", str(e))
        what = f"a Python object ({m.group(1)})" if m else "Python objects"
        raise AlignkitError(f"{file}: refused to load: it holds {what}, not only tensors and plain data, and "
                            "loading it could run code; do not resume from a checkpoint you cannot trust") from None
    except (RuntimeError, EOFError) as e:
        raise DamagedCheckpoint(f"{file}: cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    set_rng_state(blob["rng"])
    return TrainerState(**_json(path / TRAINER_FILE)), weights, blob["backends"]


def check_weights(weights: dict[str, torch.Tensor], expected: Iterable[str], mismatch: str) -> None:
    missing = set(expected) - set(weights)
    if missing:
        raise AlignkitError(f"{mismatch}: missing {sorted(missing)[:3]}")
