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
from alignkit.data.samples import SampleGroup
from alignkit.data.tokenize import tokenize_sft
from alignkit.models.forward import causal_logprobs
from alignkit.models.load import load_causal_lm
from alignkit.models.padding import pad_id
from alignkit.trainers.supervised.launch import launch
from alignkit.trainers.supervised.loop import train_supervised
from alignkit.trainers.supervised.prepare import finish, prepare, shares_prompts


@dataclass(frozen=True)
class SFTObjective:
    """Items are records (`SampleGroup`s); the rows of a multi-row chat record share their common
    prefix in the forward when `share`."""

    pad_id: int
    max_length: int
    packing: bool
    device: torch.device
    share: bool = True

    def collate(self, items: Sequence[SampleGroup]) -> PackedBatch:
        rows = [s for g in items for s in g.samples]
        groups, start = [], 0
        for g in items:
            groups.append(list(range(start, start + len(g.samples))))
            start += len(g.samples)
        return pack(rows, self.pad_id, self.max_length, self.packing, groups if self.share else None).to(self.device)

    def denominator(self, items: Sequence[SampleGroup]) -> float:
        # Targets: response tokens that are not the first token of their row (see packing).
        return float(sum(sum(s.loss_mask[1:]) for g in items for s in g.samples))

    def loss_fn(self, denom: float) -> LossFn:
        def fn(model, batch: PackedBatch):
            return sft_loss(causal_logprobs(model, batch), batch.loss_mask, denom)

        return fn

    def n_tokens(self, batch: PackedBatch) -> int:
        return batch.n_tokens

    def sample_tokens(self, item: SampleGroup) -> int:
        return item.n_tokens


def run_sft(cfg: SFTConfig) -> dict[str, float]:
    """Train per `cfg` (in this process, or data parallel: trainers/supervised/launch.py); writes the run directory
    and returns the last logged metrics."""
    return launch(cfg, train_sft)


def train_sft(cfg: SFTConfig) -> dict[str, float]:
    """One worker's part of `run_sft`."""
    p = prepare(cfg, tokenize_sft)
    model = load_causal_lm(cfg.model, p.run.device)
    backend = build_backend(model, cfg.train, p.total_steps, p.run.device, cfg.policy)
    objective = SFTObjective(pad_id(p.tokenizer), cfg.data.max_length, cfg.data.packing, p.run.device,
                             shares_prompts(cfg))
    last = train_supervised(p.run, backend, objective, p.train, p.evals, p.total_steps)
    return finish(p, backend, load_causal_lm, last)
