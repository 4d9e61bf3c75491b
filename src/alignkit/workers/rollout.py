"""The rollout role: a generation engine holding its own copy of the policy weights."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import torch

from alignkit.config.rl import RLConfig
from alignkit.config.rollout import RolloutConfig
from alignkit.config.sampling import SamplingParams
from alignkit.config.schema import LoraConfig, ModelConfig
from alignkit.errors import ConfigError
from alignkit.models.load import load_causal_lm, load_tokenizer, resolve_device
from alignkit.rollout.base import Generation


def build_engine(model_cfg: ModelConfig, rollout: RolloutConfig, device_name: str):
    """A rollout engine over its own copy of the model (no LoRA: the trainer syncs merged weights)."""
    if rollout.engine == "vllm":
        from alignkit.rollout.vllm import VLLMEngine  # vLLM is imported only when asked for

        return VLLMEngine(model_cfg, rollout)
    if rollout.engine != "hf":
        raise ConfigError(f"--rollout.engine must be hf or vllm, got '{rollout.engine}'")
    from alignkit.rollout.hf import HFEngine

    device = resolve_device(device_name)
    plain = dataclasses.replace(model_cfg, lora=LoraConfig(rank=0), gradient_checkpointing=False)
    model = load_causal_lm(plain, device).eval()
    model.requires_grad_(False)
    return HFEngine(model, load_tokenizer(model_cfg), device, max_batch=rollout.batch_size)


class RolloutWorker:
    def __init__(self, cfg: RLConfig):
        self.engine = build_engine(cfg.model, cfg.rollout, cfg.train.device)

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        return self.engine.generate(prompts, params)

    def load_weights(self, named: Iterable[tuple[str, torch.Tensor]]) -> None:
        self.engine.load_weights(named)

    def sleep(self) -> None:
        self.engine.sleep()

    def wake_up(self) -> None:
        self.engine.wake_up()
