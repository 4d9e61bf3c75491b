"""A causal LM's logits at the target positions of a packed batch: the `(targets, vocab)` rows that
distillation compares between student and teacher."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignkit.data.packing import PackedBatch
from alignkit.models.forward import model_inputs, predicting_positions


@dataclass(frozen=True)
class Targets:
    """The n target tokens of a packed batch (`loss_mask` 1), in row-major order: `ids` `(n,)`, and
    `seg_ids`, `positions` `(n,)`, the sample and the sequence position of each; `predictors` `(n,)`,
    the flat position (into `(rows * seq)`) whose logits predict each."""

    ids: torch.Tensor
    seg_ids: torch.Tensor
    positions: torch.Tensor
    predictors: torch.Tensor


def targets_of(batch: PackedBatch) -> Targets:
    """A target is predicted by the token before it in its row (the first token of a sample never is a
    target, data/packing.py), or, for the first token of a sample that continues a shared prompt, by
    that prompt's last token (as models/forward.py `causal_forward`)."""
    where = (batch.loss_mask.reshape(-1) > 0).nonzero().squeeze(1)
    flat = (batch.input_ids, batch.seg_ids, batch.position_ids)
    ids, seg, pos = (x.reshape(-1)[where] for x in flat)
    return Targets(ids, seg, pos, predicting_positions(batch)[where])


def target_logits(model, batch: PackedBatch, width: int) -> torch.Tensor:
    """`(n, width)`: the logits predicting each target of `batch` (order of `targets_of`), cut to the
    first `width` vocabulary ids (the ids student and teacher share; models/teacher.py). The full
    `(rows, seq, vocab)` output is freed on return; only the target rows are kept (a copy)."""
    logits = model(**model_inputs(model, batch), use_cache=False).logits
    return logits.reshape(-1, logits.shape[-1])[targets_of(batch).predictors, :width]
