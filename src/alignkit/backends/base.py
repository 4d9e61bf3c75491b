"""The training-backend protocol: every backend (torch, FSDP2, DeepSpeed) exposes these calls.

A backend never sees an algorithm: it gets a batch and a loss function, runs forward and backward,
steps the optimizer, and saves or loads its state. Trainers and workers depend on this protocol only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch

LossFn = Callable[[torch.nn.Module, Any], tuple[torch.Tensor, dict[str, Any]]]


class TrainBackend(Protocol):
    model: torch.nn.Module
    device: torch.device

    def forward_backward(self, batch: Any, loss_fn: LossFn) -> dict[str, Any]:
        """Run loss_fn(model, batch), back-propagate, accumulate gradients; returns the loss metrics
        (`torch_local.loss_metrics`: floats, and `Metric`s with their reduction kept)."""

    def step(self) -> dict[str, float]:
        """Clip, step the optimizer and scheduler, zero gradients; returns grad_norm and lr."""

    def evaluate(self, batch: Any, loss_fn: LossFn) -> dict[str, float]:
        """loss_fn under no_grad in eval mode; returns its metrics."""

    def state_dict(self) -> dict[str, Any]:
        """Optimizer and scheduler state for exact resume, in one form for every backend, so that any
        backend on any number of workers resumes from it: {"optimizer": the full (unsharded) state keyed
        by parameter name, as torch.distributed.checkpoint's `get_optimizer_state_dict(full_state_dict=
        True)` gives it, "scheduler": the LR scheduler's state_dict}, on rank 0 (other ranks: {})."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load `state_dict()` of this or any other backend (every rank passes the same full state)."""

    def full_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full weights named as the plain transformers model, LoRA merged: for the rollout engine."""

    def trainable_weights(self) -> dict[str, torch.Tensor]:
        """Trainable parameters under the model's own names, on the CPU: what a checkpoint stores."""

    def load_full_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Load `trainable_weights()`-style tensors back (every rank passes the same full state)."""
