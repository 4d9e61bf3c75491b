"""Setting up a run: seed, run directory, resolved config, logger, resume point."""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from alignkit.backends.distributed import on_rank0
from alignkit.checkpoint.atomic import remove_leftovers
from alignkit.checkpoint.fingerprint import run_record
from alignkit.checkpoint.state import resume_point
from alignkit.config.parse import to_yaml
from alignkit.config.schema import RunConfig
from alignkit.data.mixture import load_mixture, train_eval_split
from alignkit.data.readers import Record, read_records
from alignkit.models.load import resolve_device
from alignkit.runtime.disk import writing
from alignkit.runtime.signals import Stopped

log = logging.getLogger("alignkit")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Run:
    """The run directory and what every trainer needs from it."""

    cfg: RunConfig
    dir: Path
    device: torch.device
    resume_from: Path | None

    @property
    def ckpt_dir(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def record(self) -> dict:
        """What each checkpoint records of the run (checkpoint/fingerprint.py)."""
        return run_record(self.cfg)


def start_run(cfg: RunConfig) -> Run:
    """In a data-parallel run every worker starts the run; rank 0 prepares the run directory and picks
    the checkpoint to resume from, which every worker then reads (the run directory must be on a file
    system they all see)."""
    seed_everything(cfg.seed)
    run_dir = Path(cfg.output_dir)
    torch.use_deterministic_algorithms(True, warn_only=True)
    resume_from = on_rank0(lambda: prepare_dir(cfg, run_dir))
    if cfg.resume and resume_from is None:
        log.warning("--resume: no checkpoint in %s yet; starting from scratch", run_dir / "checkpoints")
    return Run(cfg, run_dir, resolve_device(cfg.train.device), resume_from)


def prepare_dir(cfg: RunConfig, run_dir: Path) -> Path | None:
    """The checkpoint to resume from, checked (checkpoint/state.py `resume_point`); then config.yaml, so
    that it never claims a value a refused resume would not use. Leftovers of saves a crash interrupted
    are removed first (the run holds the directory's lock, runtime/lock.py)."""
    with writing(run_dir, "the run directory"):
        run_dir.mkdir(parents=True, exist_ok=True)
    gone = remove_leftovers(run_dir / "checkpoints") + remove_leftovers(run_dir)
    if gone:
        log.warning("removed %d unfinished save(s) of an earlier crash: %s", len(gone), ", ".join(p.name for p in gone))
    resume_from = resume_point(cfg, run_dir / "checkpoints")
    with writing(run_dir / "config.yaml", "the config"):
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
    return resume_from


def stop_with_checkpoint(run: Run, signum: int, save: Callable[[], None] | None, step: int) -> NoReturn:
    """A signal asked the run to stop (runtime/signals.py): `save` the checkpoint of `step` (None: this
    step's was just saved) and raise Stopped."""
    if save is not None:
        save()
    raise Stopped(signum, run.ckpt_dir / f"step_{step}")


def load_records(cfg: RunConfig) -> tuple[list[Record], list[Record]]:
    """Training and eval records per the data config (mixture, max_samples, eval split)."""
    d = cfg.data
    train = load_mixture(d.train_files, d.train_weights, d.max_samples, cfg.seed)
    if d.eval_files:
        evals = [r for f in d.eval_files for r in read_records(f)]
    elif d.eval_fraction > 0:
        train, evals = train_eval_split(train, d.eval_fraction, cfg.seed)
    else:
        evals = []
    return train, evals


def config_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)
