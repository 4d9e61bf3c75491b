"""Backend selection: the one place that maps a config to a TrainBackend."""

from __future__ import annotations

import math

import torch

from alignkit.backends.base import TrainBackend
from alignkit.backends.torch_local import OptimConfig, TorchBackend
from alignkit.config.schema import BackendConfig, TrainConfig
from alignkit.errors import ConfigError

BACKENDS = ("torch", "fsdp2", "deepspeed")
ONE_PROCESS = BackendConfig()  # the default: the torch backend


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


def build_backend(
    model: torch.nn.Module,
    t: TrainConfig,
    total_steps: int,
    device: torch.device,
    backend_cfg: BackendConfig = ONE_PROCESS,
) -> TrainBackend:
    """The backend named by `--policy.backend`. fsdp2 and deepspeed need a running process group (one
    process per worker) and shard `model` in place over it."""
    optim = optim_config(t, total_steps)
    name = backend_cfg.backend
    if name == "torch":
        return TorchBackend(model, optim, device)
    # The sharded backends are imported on demand: FSDP's and DeepSpeed's modules are heavy, and
    # DeepSpeed is an optional extra (imported inside its backend, with a message when missing).
    if name == "fsdp2":
        from alignkit.backends.fsdp2 import FSDP2Backend

        return FSDP2Backend(model, optim, device, offload=backend_cfg.offload)
    if name == "deepspeed":
        from alignkit.backends.deepspeed import DeepSpeedBackend

        return DeepSpeedBackend(model, optim, device, backend_cfg.zero_stage, backend_cfg.offload)
    raise ConfigError(f"--policy.backend {name!r}: unknown; choose one of {', '.join(BACKENDS)}")
