"""Supervised fine-tuning: next-token loss on response tokens (every assistant turn in chat data)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from alignkit.algos.losses.sft import sft_loss
from alignkit.backends.base import LossFn
from alignkit.backends.factory import build_backend
from alignkit.checkpoint.export import export_hf
from alignkit.config.schema import SFTConfig
from alignkit.config.validate import validate_run
from alignkit.data.packing import PackedBatch, pack
from alignkit.data.samples import TokenizedSample
from alignkit.data.tokenize import tokenize_sft
from alignkit.models.forward import causal_logprobs
from alignkit.models.load import load_causal_lm, load_tokenizer
from alignkit.trainers.loop import plan_steps, train_supervised
from alignkit.trainers.run import load_records, start_run

log = logging.getLogger("alignkit")


@dataclass(frozen=True)
class SFTObjective:
    pad_id: int
    max_length: int
    packing: bool
    device: torch.device

    def collate(self, samples: Sequence[TokenizedSample]) -> PackedBatch:
        return pack(list(samples), self.pad_id, self.max_length, self.packing).to(self.device)

    def denominator(self, samples: Sequence[TokenizedSample]) -> float:
        # Targets: response tokens that are not the first token of their sample (see packing).
        return float(sum(sum(s.loss_mask[1:]) for s in samples))

    def loss_fn(self, denom: float) -> LossFn:
        def fn(model, batch: PackedBatch):
            return sft_loss(causal_logprobs(model, batch), batch.loss_mask, denom)

        return fn

    def n_tokens(self, batch: PackedBatch) -> int:
        return batch.n_tokens


def run_sft(cfg: SFTConfig) -> dict[str, float]:
    """Train per `cfg`; writes the run directory and returns the last logged metrics."""
    validate_run(cfg)
    run = start_run(cfg)
    tokenizer = load_tokenizer(cfg.model)
    train_recs, eval_recs = load_records(cfg)
    train, stats = tokenize_sft(train_recs, tokenizer, cfg.data)
    evals, _ = tokenize_sft(eval_recs, tokenizer, cfg.data)
    log.info("data: %s", stats.as_dict())
    _, total = plan_steps(len(train), cfg.train.batch_size, cfg.train.max_steps, cfg.train.epochs)
    model = load_causal_lm(cfg.model, run.device)
    backend = build_backend(model, cfg.train, total, run.device)
    objective = SFTObjective(tokenizer.pad_token_id, cfg.data.max_length, cfg.data.packing, run.device)
    last = train_supervised(run, backend, objective, train, evals, total)
    export_hf(model, tokenizer, run.dir / "final", {"data_stats.json": stats.as_dict()})
    return last | {f"data_{k}": v for k, v in stats.as_dict().items()}
