"""Metrics sinks: metrics.jsonl always; TensorBoard and Weights & Biases when asked."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from alignkit.config.schema import LoggingConfig
from alignkit.errors import AlignkitError
from alignkit.runtime.disk import writing

log = logging.getLogger("alignkit")


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


class MetricsLogger:
    """One JSON line per logged step. On resume from step k, lines after k (written by the run that
    was interrupted) are dropped first, so the file reads as one uninterrupted run."""

    def __init__(self, run_dir: Path, cfg: LoggingConfig, resume_step: int | None, config_dict: dict[str, Any]):
        self.path = run_dir / "metrics.jsonl"
        with writing(self.path, "metrics"):
            if resume_step is None:
                self.path.write_text("")
            else:
                self._truncate_after(resume_step)
        self.tb = None
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.wandb = None
        if cfg.wandb:
            try:
                import wandb
            except ImportError:
                raise AlignkitError("--logging.wandb true needs Weights & Biases: pip install 'alignkit[wandb]'") from None
            self.wandb = wandb.init(
                project=cfg.wandb_project, mode=cfg.wandb_mode, dir=str(run_dir), config=config_dict,
                name=run_dir.name, resume="allow",
            )

    def _truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        keep = [row for row in read_metrics(self.path.parent) if row.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(row) + "\n" for row in keep))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        row = {"step": step} | {k: _clean(v) for k, v in metrics.items()}
        with writing(self.path, "metrics"), self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        numeric = {k: v for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}
        if self.tb is not None:
            for k, v in numeric.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(numeric, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of `run_dir/metrics.jsonl`. A last line cut short (the run died while writing it, or the
    disk filled) is dropped with a warning; a malformed line elsewhere is an error naming it."""
    path = Path(run_dir) / "metrics.jsonl"
    lines = [(i, line) for i, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
    rows = []
    for i, line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i != lines[-1][0]:
                raise AlignkitError(f"{path}:{i}: not a JSON line ({e.msg})") from None
            log.warning("%s:%d: dropped a last line that was cut short", path, i)
    return rows
