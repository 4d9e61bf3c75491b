"""The frozen reference model of DPO-style and KTO training.

Three ways to get reference log-probs: a separate frozen model (a copy of the starting policy, or
`--ref.path`), the policy itself with its LoRA adapter disabled (no second copy of the weights), or
a first pass that computes them once (`--ref.precompute true`), after which the reference is freed.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from tqdm import tqdm

from alignkit.config.schema import LoraConfig, ModelConfig, RefConfig
from alignkit.data.packing import PackedBatch
from alignkit.models.forward import sequence_logps
from alignkit.models.load import load_causal_lm

T = TypeVar("T")


def load_frozen(model_cfg: ModelConfig, ref: RefConfig, device: torch.device):
    """The reference as its own frozen model (no LoRA on it)."""
    cfg = ModelConfig(path=ref.path or model_cfg.path, dtype=model_cfg.dtype,
                      attn_implementation=model_cfg.attn_implementation, lora=LoraConfig(rank=0),
                      logprob_chunk_tokens=model_cfg.logprob_chunk_tokens)
    model = load_causal_lm(cfg, device).eval()
    model.requires_grad_(False)
    return model


class Reference:
    """Summed reference log-probs of packed samples, from `model`, or from `policy` with its adapter
    disabled when `model` is None."""

    def __init__(self, model=None, policy=None):
        if model is None and not hasattr(policy, "disable_adapter"):
            raise ValueError("a reference needs a frozen model or a LoRA policy")
        self.model, self.policy = model, policy

    @torch.no_grad()
    def logps(self, batch: PackedBatch) -> torch.Tensor:
        if self.model is not None:
            return sequence_logps(self.model, batch)[0]
        was_training = self.policy.training
        self.policy.eval()  # dropout off: the reference must be deterministic
        try:
            with self.policy.disable_adapter():
                return sequence_logps(self.policy, batch)[0]
        finally:
            self.policy.train(was_training)

    def release(self) -> None:
        """Drop a separate reference model (after precomputing)."""
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def needs_own_model(ref: RefConfig, lora: LoraConfig) -> bool:
    """A separate frozen model is loaded unless the policy's LoRA base can serve as the reference."""
    return bool(ref.path) or lora.rank <= 0


def precompute(reference: Reference, items: Sequence[T], collate: Callable[[Sequence[T]], PackedBatch],
               micro: int) -> list[tuple[float, float]]:
    """Summed reference log-probs of the two samples of each item (a pair's chosen and rejected, a KTO
    sample and its mismatched twin), computed once in micro-batches of `micro` items. `collate` packs m
    items with item i's samples as segments i and m + i, on the reference's device."""
    out: list[tuple[float, float]] = []
    for i in tqdm(range(0, len(items), micro), desc="reference log-probs", unit="batch", leave=False, disable=None):
        chunk = items[i : i + micro]
        lp = reference.logps(collate(chunk)).tolist()
        out += zip(lp[: len(chunk)], lp[len(chunk) :], strict=True)
    return out


def reference_per_item(reference: Reference | None, splits: Sequence[Sequence[T]],
                       collate: Callable[[Sequence[T]], PackedBatch], micro: int,
                       enabled: bool) -> list[list[tuple[float, float] | None]]:
    """For each split (train, eval), each item's precomputed reference log-probs (`precompute`), after
    which a separate reference model is freed; None per item when `enabled` is off and the reference
    runs every step."""
    if not enabled:
        return [[None] * len(s) for s in splits]
    out = [precompute(reference, s, collate, micro) for s in splits]
    reference.release()
    return out
