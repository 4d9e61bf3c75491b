"""Setting up a run: seed, run directory, resolved config, logger, resume point."""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from alignkit.backends.distributed import from_rank0, rank
from alignkit.checkpoint.state import resolve_resume
from alignkit.config.parse import to_yaml
from alignkit.config.schema import RunConfig
from alignkit.data.mixture import load_mixture, train_eval_split
from alignkit.data.readers import Record, read_records
from alignkit.models.load import resolve_device

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


def start_run(cfg: RunConfig) -> Run:
    """In a data-parallel run every worker starts the run; rank 0 writes config.yaml and picks the
    checkpoint to resume from, which every worker then reads (the run directory must be on a file system
    they all see)."""
    seed_everything(cfg.seed)
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank() == 0:
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
    torch.use_deterministic_algorithms(True, warn_only=True)
    resume_from = from_rank0(resolve_resume(cfg.resume, run_dir / "checkpoints"))
    if cfg.resume and resume_from is None:
        log.warning("--resume: no checkpoint in %s yet; starting from scratch", run_dir / "checkpoints")
    return Run(cfg, run_dir, resolve_device(cfg.train.device), resume_from)


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
