"""Set-up and finish shared by the supervised trainers (sft, rm, dpo, kto): validated config, run
directory, tokenized train/eval data and step count in; Hugging Face export and data stats out. In a
data-parallel run every worker prepares the same (whole) data; the loop splits it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alignkit.backends.base import TrainBackend
from alignkit.checkpoint.export import LoadModel, export_trained
from alignkit.config.schema import DataConfig, RunConfig
from alignkit.config.validate import validate_run
from alignkit.data.packing import PairPacker
from alignkit.data.readers import Record
from alignkit.data.samples import TokenizeStats
from alignkit.data.validate import cut_to_max_length
from alignkit.models.load import load_tokenizer
from alignkit.models.padding import pad_id
from alignkit.trainers.run import Run, load_records, start_run
from alignkit.trainers.supervised.loop import plan_steps

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
    train_recs, eval_recs = (cut_to_max_length(r, tokenizer, cfg.data) for r in load_records(cfg))
    train, stats = tokenize(train_recs, tokenizer, cfg.data)
    evals, _ = tokenize(eval_recs, tokenizer, cfg.data)
    log.info("data: %s", stats.as_dict())
    _, total = plan_steps(len(train), cfg.train.batch_size, cfg.train.max_steps, cfg.train.epochs)
    return Prepared(run, tokenizer, train, evals, stats, total)


def shares_prompts(cfg: RunConfig) -> bool:
    """Whether samples that begin alike share their prompt in the forward: unless switched off, packing
    is off, or the attention kernel is flash-attention (it reads sample boundaries from position ids only)."""
    d = cfg.data
    return d.share_prompt and d.packing and not cfg.model.attn_implementation.startswith("flash")


def pair_packer(cfg: RunConfig, p: Prepared) -> PairPacker:
    """How a run packs preference pairs (`shares_prompts`)."""
    d = cfg.data
    return PairPacker(pad_id(p.tokenizer), d.max_length, d.packing, shares_prompts(cfg), p.run.device)


def finish(p: Prepared, backend: TrainBackend, load: LoadModel, last: dict[str, float],
           extra_json: dict[str, Any] | None = None) -> dict[str, float]:
    """Export `final/` (the backend's model as `load` builds it, tokenizer, data_stats.json and
    `extra_json`; collective in a data-parallel run, rank 0 writes); the run's last metrics plus the
    data statistics."""
    extra = {"data_stats.json": p.stats.as_dict()} | (extra_json or {})
    export_trained(backend, load, p.run.cfg.model, p.tokenizer, p.run.dir / "final", extra)
    return last | {f"data_{k}": v for k, v in p.stats.as_dict().items()}
