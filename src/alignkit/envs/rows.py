"""Trajectories -> the rows of the trainer's batch (workers/experience.py `Experience` fields).

Failed trajectories are dropped (the failure rule in envs/loop.py); `trainable` does that. The
remaining ones become right-padded rows, one per trajectory, whose response mask is 1 exactly on the
tokens the engine sampled, with their sampling log-probs as the behaviour log-probs.
"""

from __future__ import annotations

import torch

from alignkit.envs.trajectory import Trajectory


def trainable(trajectories: list[Trajectory]) -> list[Trajectory]:
    """The trajectories that may be trained on: every one that did not fail."""
    return [t for t in trajectories if not t.failed]


def to_rows(trajectories: list[Trajectory], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded rows, shapes `(n, L)` with L the longest trajectory:

    input_ids (n, L) long; lengths (n,); response_mask (n, L) float, 1 on sampled tokens;
    behaviour_logp (n, L) float, sampling log-probs there, 0 elsewhere; rewards (n,) the trajectory
    rewards; group_ids (n,) long; token_rewards (n, L) each turn's reward at that turn's last sampled
    token (per-turn credit; a row sums to its reward); truncated (n,) bool.
    """
    if not trajectories:
        raise ValueError("to_rows needs at least one trajectory")
    failed = [t.episode for t in trajectories if t.failed]
    if failed:
        raise ValueError(f"failed trajectories cannot be trained on (episodes {failed}); filter with trainable()")
    n, width = len(trajectories), max(len(t.ids) for t in trajectories)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width))
    logp = torch.zeros((n, width))
    token_rewards = torch.zeros((n, width))
    for i, t in enumerate(trajectories):
        k = len(t.ids)
        ids[i, :k] = torch.tensor(t.ids)
        mask[i, :k] = torch.tensor(t.trained, dtype=torch.float32)
        logp[i, :k] = torch.tensor(t.logprobs, dtype=torch.float32)
        for turn in t.turns:
            token_rewards[i, turn.end - 1] += turn.reward
    return {
        "input_ids": ids,
        "lengths": torch.tensor([len(t.ids) for t in trajectories]),
        "response_mask": mask,
        "behaviour_logp": logp,
        "rewards": torch.tensor([t.reward for t in trajectories], dtype=torch.float32),
        "group_ids": torch.tensor([t.group for t in trajectories]),
        "token_rewards": token_rewards,
        "truncated": torch.tensor([t.truncated for t in trajectories]),
    }
