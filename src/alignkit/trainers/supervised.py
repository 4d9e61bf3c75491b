"""Set-up and finish shared by the supervised trainers (sft, rm, dpo, kto): validated config, run
directory, tokenized train/eval data and step count in; Hugging Face export and data stats out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alignkit.checkpoint.export import export_hf
from alignkit.config.schema import DataConfig, RunConfig
from alignkit.config.validate import validate_run
from alignkit.data.readers import Record
from alignkit.data.samples import TokenizeStats
from alignkit.models.load import load_tokenizer
from alignkit.trainers.loop import plan_steps
from alignkit.trainers.run import Run, load_records, start_run

log = logging.getLogger("alignkit")

Tokenize = Callable[[list[Record], Any, DataConfig], tuple[list, TokenizeStats]]


@dataclass
class Prepared:
    run: Run
    tokenizer: Any
    train: list
    evals: list
    stats: TokenizeStats
    total_steps: int


def prepare(cfg: RunConfig, tokenize: Tokenize) -> Prepared:
    validate_run(cfg)
    run = start_run(cfg)
    tokenizer = load_tokenizer(cfg.model)
    train_recs, eval_recs = load_records(cfg)
    train, stats = tokenize(train_recs, tokenizer, cfg.data)
    evals, _ = tokenize(eval_recs, tokenizer, cfg.data)
    log.info("data: %s", stats.as_dict())
    _, total = plan_steps(len(train), cfg.train.batch_size, cfg.train.max_steps, cfg.train.epochs)
    return Prepared(run, tokenizer, train, evals, stats, total)


def finish(p: Prepared, model, last: dict[str, float], extra_json: dict[str, Any] | None = None) -> dict[str, float]:
    """Export `final/` (model, tokenizer, data_stats.json and `extra_json`); the run's last metrics
    plus the data statistics."""
    export_hf(model, p.tokenizer, p.run.dir / "final", {"data_stats.json": p.stats.as_dict()} | (extra_json or {}))
    return last | {f"data_{k}": v for k, v in p.stats.as_dict().items()}
