"""Backend selection: the one place that maps a config to a TrainBackend."""

from __future__ import annotations

import math

import torch

from alignkit.backends.base import TrainBackend
from alignkit.backends.torch_local import OptimConfig, TorchBackend
from alignkit.config.schema import TrainConfig


def optim_config(t: TrainConfig, total_steps: int) -> OptimConfig:
    return OptimConfig(
        lr=t.lr,
        total_steps=total_steps,
        warmup_steps=math.ceil(t.warmup_ratio * total_steps),
        min_lr_ratio=t.min_lr_ratio,
        weight_decay=t.weight_decay,
        betas=(t.adam_betas[0], t.adam_betas[1]),
        eps=t.adam_eps,
        max_grad_norm=t.max_grad_norm,
    )


def build_backend(model: torch.nn.Module, t: TrainConfig, total_steps: int, device: torch.device) -> TrainBackend:
    return TorchBackend(model, optim_config(t, total_steps), device)
