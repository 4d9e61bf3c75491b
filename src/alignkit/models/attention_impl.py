"""The attention implementation a model runs with: the configured one (`--model.attn_implementation`)
when the model supports it, else the first of sdpa, eager that it does, announced in one log line.

Gemma 2 and gpt-oss have no sdpa path (logit soft-capping and attention sinks live in their eager and
flex kernels); GPT-2 has no flex path; flex_attention runs on GPUs only (on a CPU, torch 2.13's flex
attention has no backward, and transformers cannot apply attention sinks with it).
"""

from __future__ import annotations

import logging

import torch
from transformers import AutoConfig
from transformers.utils import is_torch_flex_attn_available

log = logging.getLogger("alignkit")

FALLBACKS = ("sdpa", "eager")


def supports(model_cls, impl: str) -> bool:
    """Whether the transformers class `model_cls` declares an `impl` path. Kernels it cannot judge (hub
    kernels, paged variants) are left to transformers."""
    if impl == "sdpa":
        return bool(model_cls._supports_sdpa)
    if impl == "flex_attention":
        return bool(model_cls._supports_flex_attn) and is_torch_flex_attn_available()
    if impl.startswith("flash_attention"):
        return bool(model_cls._supports_flash_attn)
    return True


def choose_attn_implementation(auto_cls, path: str, requested: str) -> str:
    """`requested` if the class `auto_cls` loads from `path` supports it, else a fallback (logged)."""
    config = AutoConfig.from_pretrained(path)
    model_cls = auto_cls._model_mapping.get(type(config), None)
    if model_cls is None or supports(model_cls, requested):
        return requested
    chosen = next(impl for impl in FALLBACKS if supports(model_cls, impl))
    log.warning("%s does not support attn_implementation=%s; using %s", model_cls.__name__, requested, chosen)
    return chosen


def fit_to_device(model, device: torch.device):
    """Switch a model from flex_attention to a fallback on a CPU, where flex attention has no backward
    (torch 2.13) and cannot apply attention sinks (logged); `model`: the loaded transformers model,
    changed in place and returned."""
    if model.config._attn_implementation == "flex_attention" and device.type == "cpu":
        chosen = next(impl for impl in FALLBACKS if supports(type(model), impl))
        log.warning("%s: flex_attention has no backward on a CPU; using %s", type(model).__name__, chosen)
        model.set_attn_implementation(chosen)
    return model
