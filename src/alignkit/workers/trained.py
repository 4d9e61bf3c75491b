"""What a trained role (policy, critic) gives a checkpoint and takes back from one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from alignkit.checkpoint.state import check_weights


@dataclass
class RoleState:
    """A trained role's part of a checkpoint: its full (unsharded) trainable weights and its
    optimizer and scheduler state, so that any number of workers can load it."""

    weights: dict[str, torch.Tensor]
    optim: dict[str, Any]


class TrainedRole:
    """Checkpoint methods of a worker with a `model` and a training `backend`."""

    model: torch.nn.Module
    backend: Any

    def checkpoint_state(self) -> RoleState:
        return RoleState(self.backend.trainable_weights(), self.backend.state_dict())

    def load_checkpoint_state(self, state: RoleState) -> None:
        expected = (n for n, p in self.model.named_parameters() if p.requires_grad)
        check_weights(state.weights, expected, "the checkpoint does not match the model")
        self.backend.load_full_weights(state.weights)
        self.backend.load_state_dict(state.optim)
