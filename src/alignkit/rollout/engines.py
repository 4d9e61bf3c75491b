"""The rollout engines by name (`--rollout.engine`), each with the facts the rest of a run needs about it:
whether it keeps its GPU memory between calls, whether its log-probs come from other kernels than the
trainer's, how it takes new weights on GPUs, and its own settings checks. Nothing outside this registry
compares engine names."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alignkit.config.rollout import RolloutConfig
from alignkit.config.schema import LoraConfig, ModelConfig
from alignkit.models.load import load_causal_lm, load_tokenizer, resolve_device
from alignkit.rollout.base import RolloutEngine


def _build_hf(model_cfg: ModelConfig, rollout: RolloutConfig, device_name: str) -> RolloutEngine:
    from alignkit.rollout.hf import HFEngine

    device = resolve_device(device_name)
    plain = dataclasses.replace(model_cfg, lora=LoraConfig(rank=0), gradient_checkpointing=False)
    model = load_causal_lm(plain, device).eval()
    model.requires_grad_(False)
    return HFEngine(model, load_tokenizer(model_cfg), device, max_batch=rollout.batch_size)


def _build_vllm(model_cfg: ModelConfig, rollout: RolloutConfig, device_name: str) -> RolloutEngine:
    from alignkit.rollout.vllm import VLLMEngine  # vLLM is imported only when asked for

    return VLLMEngine(model_cfg, rollout)


def _check_vllm(cfg: Any) -> None:
    from alignkit.rollout.vllm_setup import check_settings

    check_settings(cfg)


@dataclass(frozen=True)
class Engine:
    """A registry entry: how to build the engine and what a run must know about it."""

    build: Callable[[ModelConfig, RolloutConfig, str], RolloutEngine]
    holds_memory: bool  # keeps its GPU memory between calls: sleeps while trainers share its device
    own_logprobs: bool  # samples with other kernels than the trainer's: truncated importance weights correct it
    gpu_weights: bool  # takes new weights from GPU to GPU (NCCL, CUDA IPC) when on GPUs
    check: Callable[[Any], None] | None = None  # its settings in an RL config, checked before anything loads


ENGINES: dict[str, Engine] = {
    "hf": Engine(_build_hf, holds_memory=False, own_logprobs=False, gpu_weights=False),
    "vllm": Engine(_build_vllm, holds_memory=True, own_logprobs=True, gpu_weights=True, check=_check_vllm),
}


def build_engine(model_cfg: ModelConfig, rollout: RolloutConfig, device_name: str) -> RolloutEngine:
    """A rollout engine over its own copy of the model (no LoRA: the trainer syncs merged weights)."""
    return ENGINES[rollout.engine].build(model_cfg, rollout, device_name)
