"""A causal LM's logits at the target positions of a packed batch: the `(targets, vocab)` rows that
distillation compares between student and teacher."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignkit.data.packing import PackedBatch
from alignkit.models.forward import model_inputs


@dataclass(frozen=True)
class Targets:
    """The n target tokens of a packed batch (`loss_mask` 1), in row-major order: `ids` `(n,)`, and
    `seg_ids`, `positions` `(n,)`, the sample and the sequence position of each."""

    ids: torch.Tensor
    seg_ids: torch.Tensor
    positions: torch.Tensor


def targets_of(batch: PackedBatch) -> Targets:
    """Token t of a row is a target where `loss_mask[t]` is 1; the logits at t - 1 predict it. The first
    token of a sample is never a target (data/packing.py), so those logits are always its sample's."""
    if batch.parent is not None:
        raise ValueError("distillation batches do not share prompts: pack them with groups=None")
    keep = batch.loss_mask[:, 1:] > 0
    return Targets(batch.input_ids[:, 1:][keep], batch.seg_ids[:, 1:][keep], batch.position_ids[:, 1:][keep])


def target_logits(model, batch: PackedBatch, width: int) -> torch.Tensor:
    """`(n, width)`: the logits predicting each target of `batch` (order of `targets_of`), cut to the
    first `width` vocabulary ids (the ids student and teacher share; models/teacher.py). The full
    `(rows, seq, vocab)` output is freed on return; only the target rows are kept (a copy)."""
    logits = model(**model_inputs(model, batch), use_cache=False).logits
    return logits[:, :-1, :width][batch.loss_mask[:, 1:] > 0]
