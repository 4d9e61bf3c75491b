"""What a trained role (policy, critic) gives a checkpoint and takes back from one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from alignkit.algos.metric import Metric, mean, merge_all
from alignkit.checkpoint.state import check_weights
from alignkit.workers.dispatch import dispatch


@dataclass
class RoleState:
    """A trained role's part of a checkpoint: its full (unsharded) trainable weights and its
    optimizer and scheduler state, so that any number of workers can load it."""

    weights: dict[str, torch.Tensor]
    optim: dict[str, Any]


def role_state(backend: Any) -> RoleState:
    """A backend's part of a checkpoint: collective under a sharded backend (every worker calls it), full
    on rank 0 and empty on the others."""
    return RoleState(backend.trainable_weights(), backend.state_dict())


def restore(backend: Any, state: RoleState) -> None:
    """Load a checkpoint's part into a backend whose model is already sharded (every worker passes the
    same full state and keeps its own shard)."""
    expected = (n for n, p in backend.model.named_parameters() if p.requires_grad)
    check_weights(state.weights, expected, "the checkpoint does not match the model")
    backend.load_full_weights(state.weights)
    backend.load_state_dict(state.optim)


def step_metrics(parts: list[dict[str, Metric]], step: dict[str, float]) -> dict[str, Metric]:
    """A trained role's metrics of one optimizer step: its micro-batches' partials combined, and the
    backend's grad_norm and lr (one per optimizer step: a mean over the step's updates)."""
    return merge_all(parts) | {k: mean(v, 1.0) for k, v in step.items()}


class TrainedRole:
    """Checkpoint methods of a worker with a `model` and a training `backend`."""

    model: torch.nn.Module
    backend: Any

    @dispatch("all")
    def checkpoint_state(self) -> RoleState:
        return role_state(self.backend)

    @dispatch("all")
    def load_checkpoint_state(self, state: RoleState) -> None:
        restore(self.backend, state)
