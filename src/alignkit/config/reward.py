"""Typed, frozen configuration of rewards: the sources scored in training, and the reward server.

A reward combines any of four sources, each named (the name keys `weights` and is logged as
`reward/<name>`): the user function (named after the function), each rule (named after the rule, the
part before ':'), the reward model (`model`) and the HTTP servers (`http`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RewardConfig:
    """Where rewards come from and how the sources are combined."""

    function: str = ""
    """A Python reward function in a file, as path/to/file.py:name (see alignkit.rewards.function)."""
    rules: list[str] = field(default_factory=list)
    """Built-in rule rewards: math (answer equals the label, by math-verify), exact (stripped text equals the label), boxed (an answer in \\boxed{}), format:REGEX (the whole response matches REGEX)."""
    model_path: str = ""
    """A reward model folder written by `alignkit rm` (Hugging Face sequence classifier)."""
    urls: list[str] = field(default_factory=list)
    """Reward servers (`alignkit serve-reward`), e.g. http://127.0.0.1:8000; batches are split over them."""
    weights: dict[str, float] = field(default_factory=dict)
    """Weight per source name, e.g. {"math": 1.0, "boxed": 0.1}; a source not named gets weight 1."""
    normalize: bool = True
    """Score the reward model as (r - mean) / std with the reward_stats.json saved beside it."""
    device: str = "auto"
    """Device of the reward model: auto (cuda when available), cpu, cuda or cuda:N."""
    timeout_s: float = 30.0
    """Seconds one call may take: a reward function's call on a batch, or a reward server's whole answer (then retried)."""
    retries: int = 2
    """Further attempts after a reward server times out, cannot be reached or answers 502/503/504."""
    batch_size: int = 64
    """Samples per request to a reward server, and per forward pass of the reward model."""
    clip: float | None = None
    """Clamp the combined reward to [-clip, clip]; None leaves it as is."""


@dataclass(frozen=True)
class ServeRewardConfig:
    """Serve a reward model or a reward function over HTTP: POST /score, GET /health."""

    host: str = "127.0.0.1"
    """Address to listen on; 0.0.0.0 exposes the server to other machines."""
    port: int = 8000
    """TCP port to listen on."""
    model_path: str = ""
    """A reward model folder written by `alignkit rm` to serve (give this or function)."""
    function: str = ""
    """A Python reward function to serve, as path/to/file.py:name (give this or model_path)."""
    normalize: bool = True
    """Serve reward-model scores as (r - mean) / std with the reward_stats.json saved beside it."""
    device: str = "auto"
    """Device of the reward model: auto (cuda when available), cpu, cuda or cuda:N."""
    max_batch: int = 64
    """Most samples scored in one call; concurrent requests are merged up to this (a larger request is scored alone)."""
    max_wait_ms: float = 10.0
    """How long the first request of a batch waits for others to join it."""
    timeout_s: float = 60.0
    """Longest a /score request waits for its scores (then 504); /health reports the reward stuck past it."""
    max_body_mb: float = 64.0
    """Largest /score request body accepted, in MB (then 413)."""
    token: str = ""
    """Require `Authorization: Bearer TOKEN` on /score; empty reads ALIGNKIT_REWARD_TOKEN (unset: no check)."""
