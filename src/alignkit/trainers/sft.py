"""Supervised fine-tuning: next-token loss on response tokens (every assistant turn in chat data)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from alignkit.algos.losses.sft import sft_loss
from alignkit.backends.base import LossFn
from alignkit.backends.factory import build_backend
from alignkit.config.schema import SFTConfig
from alignkit.data.packing import PackedBatch, pack
from alignkit.data.samples import TokenizedSample
from alignkit.data.tokenize import tokenize_sft
from alignkit.models.forward import causal_logprobs
from alignkit.models.load import load_causal_lm
from alignkit.trainers.launch import launch
from alignkit.trainers.loop import train_supervised
from alignkit.trainers.supervised import finish, prepare


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

    def sample_tokens(self, sample: TokenizedSample) -> int:
        return len(sample.input_ids)


def run_sft(cfg: SFTConfig) -> dict[str, float]:
    """Train per `cfg` (in this process, or data parallel: trainers/launch.py); writes the run directory
    and returns the last logged metrics."""
    return launch(cfg, train_sft)


def train_sft(cfg: SFTConfig) -> dict[str, float]:
    """One worker's part of `run_sft`."""
    p = prepare(cfg, tokenize_sft)
    model = load_causal_lm(cfg.model, p.run.device)
    backend = build_backend(model, cfg.train, p.total_steps, p.run.device, cfg.policy)
    objective = SFTObjective(p.tokenizer.pad_token_id, cfg.data.max_length, cfg.data.packing, p.run.device)
    last = train_supervised(p.run, backend, objective, p.train, p.evals, p.total_steps)
    return finish(p, backend, load_causal_lm, last)
