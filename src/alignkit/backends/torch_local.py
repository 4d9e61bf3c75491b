"""Plain torch training on one device: AdamW, cosine schedule with warm-up, gradient clipping and
accumulation. The reference backend that FSDP2 and DeepSpeed must match."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from alignkit.algos.metric import Metric
from alignkit.backends.base import LossFn
from alignkit.backends.distributed import rank
from alignkit.backends.hyper import configured_hyperparameters
from alignkit.errors import AlignkitError
from alignkit.models.weights import full_weights


@dataclass(frozen=True)
class OptimConfig:
    """What the backend needs of the training config (kept separate so roles can differ)."""

    lr: float
    total_steps: int
    warmup_steps: int
    min_lr_ratio: float
    weight_decay: float
    betas: tuple[float, float]
    eps: float
    max_grad_norm: float


def loss_metrics(loss: torch.Tensor, metrics: dict[str, Any]) -> dict[str, Any]:
    """What `forward_backward` returns: the loss function's metrics as plain numbers (a `Metric` keeps
    its reduction, with floats), and `loss` as a float unless the loss function reported its own."""
    out = {k: v.item() if isinstance(v, Metric) else float(v) for k, v in metrics.items()}
    return {"loss": float(loss.detach())} | out


def adamw(model: torch.nn.Module, optim: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (plain or DTensor); no weight decay on biases and norms,
    as in most LM training recipes."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=optim.lr,
        betas=optim.betas,
        eps=optim.eps,
        foreach=True,
    )


def cosine_schedule(optimizer: torch.optim.Optimizer, optim: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to `min_lr_ratio * lr` at `total_steps`."""
    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer,
        num_warmup_steps=optim.warmup_steps,
        num_training_steps=max(optim.total_steps, 1),
        min_lr_rate=optim.min_lr_ratio,
    )


class TorchBackend:
    """One model, one device, one optimizer."""

    def __init__(self, model: torch.nn.Module, optim: OptimConfig, device: torch.device):
        self.model = model
        self.device = device
        self.optim_cfg = optim
        self.optimizer = adamw(model, optim)
        self.scheduler = cosine_schedule(self.optimizer, optim)

    def forward_backward(self, batch: Any, loss_fn: LossFn) -> dict[str, float]:
        self.model.train()
        loss, metrics = loss_fn(self.model, batch)
        if not torch.isfinite(loss):
            raise AlignkitError(f"the loss is {float(loss)}; lower --train.lr or check the data")
        loss.backward()
        return loss_metrics(loss, metrics)

    def step(self) -> dict[str, float]:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        max_norm = self.optim_cfg.max_grad_norm if self.optim_cfg.max_grad_norm > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"grad_norm": float(grad_norm), "lr": lr}

    @torch.no_grad()
    def evaluate(self, batch: Any, loss_fn: LossFn) -> dict[str, float]:
        self.model.eval()
        loss, metrics = loss_fn(self.model, batch)
        return loss_metrics(loss, metrics)

    # torch.distributed.checkpoint is imported in the two methods below: it takes about a second to
    # import, and a run needs it only when it saves or resumes.

    def state_dict(self) -> dict[str, Any]:
        """The backend-neutral state (see `base.TrainBackend.state_dict`) on rank 0, {} on other ranks:
        torch.distributed.checkpoint's full optimizer state dict, which names each parameter's moments
        and, under FSDP2, gathers them whole from the shards (a collective there), and the scheduler."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        optimizer = get_optimizer_state_dict(self.model, self.optimizer, options=options)
        return {"optimizer": optimizer, "scheduler": self.scheduler.state_dict()} if rank() == 0 else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Every rank passes the same full state (each reads the checkpoint) and keeps its own shard of
        it; no communication."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True)
        with configured_hyperparameters(self.optimizer, self.scheduler):
            set_optimizer_state_dict(self.model, self.optimizer, state["optimizer"], options=options)
            self.scheduler.load_state_dict(state["scheduler"])

    def full_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) of every parameter as the plain transformers model names it, LoRA merged (see
        `models.weights.full_weights`: copy each tensor before asking for the next)."""
        return full_weights(self.model)

    def trainable_weights(self) -> dict[str, torch.Tensor]:
        """Trainable parameters on the CPU, named as the model (peft-wrapped or not) names them: what a
        checkpoint stores."""
        return {n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def load_full_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Copy full tensors named as in `trainable_weights` (any subset) into the model."""
        params = dict(self.model.named_parameters())
        for name, tensor in weights.items():
            params[name].copy_(tensor)
