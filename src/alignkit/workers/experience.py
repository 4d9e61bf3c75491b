"""The typed batch of an online-RL step, passed between roles.

One row per sequence (prompt + response), right-padded, shapes `(n, L)`: token t of row i is
input_ids[i, t], and per-token values at t refer to that token (its log-prob given the tokens before
it, the value of the state before it). Sequence-level math (group advantages, GAE, GSPO ratios) runs
on this layout; forward passes pack the rows (data/packing.py `pack_rows`) and unpack the results.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Experience:
    input_ids: torch.Tensor  # (n, L) long
    lengths: torch.Tensor  # (n,) tokens in each row
    response_mask: torch.Tensor  # (n, L) float: 1 on response tokens (the actions)
    group_ids: torch.Tensor  # (n,) long: rows from the same prompt share an id
    rewards: torch.Tensor  # (n,) final scalar reward after shaping
    behaviour_logp: torch.Tensor  # (n, L) sampling log-probs reported by the rollout engine
    version: int = 0  # policy version (optimizer updates so far) that generated the rows
    old_logp: torch.Tensor | None = None  # (n, L) trainer log-probs before the update; None: on-policy
    ref_logp: torch.Tensor | None = None  # (n, L) reference log-probs
    teacher_logp: torch.Tensor | None = None  # (n, L) teacher log-probs (on-policy distillation)
    values: torch.Tensor | None = None  # (n, L) critic values
    advantages: torch.Tensor | None = None  # (n, L)
    returns: torch.Tensor | None = None  # (n, L)
    is_weight: torch.Tensor | None = None  # (n, L) truncated importance weights of stale rows (async); None: 1
    turn_rewards: torch.Tensor | None = None  # (n, L) multi-turn: each turn's reward at its last sampled token

    @property
    def n(self) -> int:
        return self.input_ids.shape[0]

    def with_(self, **changes) -> Experience:
        return dataclasses.replace(self, **changes)

    def select(self, idx: torch.Tensor) -> Experience:
        """The rows `idx`, trimmed to their longest length."""
        width = int(self.lengths[idx].max())
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = v[idx]
                out[f.name] = v[:, :width] if v.dim() == 2 else v
            else:
                out[f.name] = v
        return Experience(**out)

    def blank(self) -> Experience:
        """One empty row shaped like these: one zero token, nothing masked, zeros everywhere, so it adds
        nothing to a loss or a metric (a stand-in micro-batch for a worker that must join a collective)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = torch.zeros((1, 1)[: v.dim()], dtype=v.dtype) if isinstance(v, torch.Tensor) else v
        out["lengths"] = torch.ones(1, dtype=self.lengths.dtype)
        return Experience(**out)
