"""Checkpoints for exact resume: trainable weights, optimizer, scheduler, RNG states, data position.

Layout of `checkpoints/step_N/`: `<role>.safetensors` per trained model (`model` for the supervised
trainers; `policy` and `critic` for online RL), holding trainable parameters only (frozen weights never
change, so the base model folder restores them), and `trainer_state.pt` (each role's optimizer and
scheduler, RNG states, step and data position, plus anything the trainer adds, such as a KL
controller's state). Weights and optimizer state are full (unsharded) and keyed by parameter name,
the one form every training backend writes and reads (backends/base.py), so a checkpoint resumes
under any backend on any number of workers.
"""

from __future__ import annotations

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
from alignkit.errors import AlignkitError

_STEP = re.compile(r"^step_(\d+)$")


@dataclass
class TrainerState:
    """Where training stands; enough, with the weights and optimizer, to continue exactly."""

    step: int = 0
    epoch: int = 0
    sample_offset: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(
    ckpt_dir: Path, weights: dict[str, dict[str, torch.Tensor]], backend_states: dict[str, Any], state: TrainerState,
    keep: int,
) -> Path:
    """Write `step_N/` from each role's full trainable weights and backend state (`TrainBackend.
    trainable_weights` and `state_dict`, gathered from the workers that hold them); keep the newest `keep`."""
    path = ckpt_dir / f"step_{state.step}"
    with atomic_dir(path) as tmp:
        for role, w in weights.items():
            save_file(w, str(tmp / f"{role}.safetensors"))
        torch.save({"backends": backend_states, "rng": rng_state(), "trainer": asdict(state)}, tmp / "trainer_state.pt")
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders of an interrupted save are ignored)."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _STEP.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def resolve_resume(resume: str, ckpt_dir: Path) -> Path | None:
    """'' -> None; 'latest'/'true' -> the newest checkpoint under ckpt_dir (None if there is none);
    anything else is a checkpoint path that must exist."""
    if not resume or resume.lower() in {"false", "no"}:
        return None
    if resume.lower() in {"latest", "true", "yes"}:
        found = list_checkpoints(ckpt_dir)
        return found[-1] if found else None
    p = Path(resume)
    if not (p / "trainer_state.pt").is_file():
        raise AlignkitError(f"--resume {resume}: not a checkpoint folder (no trainer_state.pt)")
    return p


def read_state(path: Path, roles: list[str]) -> tuple[TrainerState, dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """The trainer state, each role's trainable weights and the backends' states; restores the RNG states."""
    weights = {}
    for role in roles:
        file = path / f"{role}.safetensors"
        if not file.is_file():
            raise AlignkitError(f"checkpoint {path} has no weights for '{role}' ({file.name})")
        weights[role] = load_file(str(file))
    blob = torch.load(path / "trainer_state.pt", weights_only=False)
    set_rng_state(blob["rng"])
    return TrainerState(**blob["trainer"]), weights, blob["backends"]


def check_weights(weights: dict[str, torch.Tensor], expected: Iterable[str], mismatch: str) -> None:
    missing = set(expected) - set(weights)
    if missing:
        raise AlignkitError(f"{mismatch}: missing {sorted(missing)[:3]}")
