"""The frozen reference model of DPO-style and KTO training.

Three ways to get reference log-probs: a separate frozen model (a copy of the starting policy, or
`--ref.path`), the policy itself with its LoRA adapter disabled (no second copy of the weights), or
a first pass that computes them once (`--ref.precompute true`), after which the reference is freed.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence

import torch

from alignkit.config.schema import LoraConfig, ModelConfig, RefConfig
from alignkit.data.packing import PackedBatch, pack
from alignkit.data.samples import TokenizedSample
from alignkit.models.forward import sequence_logps
from alignkit.models.load import load_causal_lm


def load_frozen(model_cfg: ModelConfig, ref: RefConfig, device: torch.device):
    """The reference as its own frozen model (no LoRA on it)."""
    cfg = ModelConfig(path=ref.path or model_cfg.path, dtype=model_cfg.dtype,
                      attn_implementation=model_cfg.attn_implementation, lora=LoraConfig(rank=0))
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


def precompute(reference: Reference, samples: Sequence[TokenizedSample], pad_id: int, capacity: int,
               packing: bool, micro: int, device: torch.device) -> torch.Tensor:
    """`(len(samples),)` summed reference log-probs, computed in micro-batches of `micro` samples."""
    parts = [
        reference.logps(pack(list(samples[i : i + micro]), pad_id, capacity, packing).to(device)).cpu()
        for i in range(0, len(samples), micro)
    ]
    return torch.cat(parts) if parts else torch.zeros(0)
