"""A multi-turn trajectory as token ids: the prompt, then per turn the sampled ids (trained, with the
engine's log-probs) and the ids the environment and the chat template add (not trained).

Token t of `ids` is trained (`trained[t] == 1`) exactly when the engine sampled it, and
`logprobs[t]` is then its sampling log-prob (0 elsewhere). Nothing in `ids` is ever re-tokenised:
the engine's prompt for turn k is `ids` as they stood after turn k - 1. One trajectory maps onto one
row of the trainer's batch (see envs/rows.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Truncation = Literal["", "max_turns", "max_tokens", "env"]


@dataclass(frozen=True)
class Turn:
    """One model turn: `ids[start:end]` are the sampled tokens; `reward` is what the step after it returned."""

    start: int
    end: int
    reward: float
    finish_reason: Literal["stop", "length"]  # stop: the model ended the turn; length: a token limit cut it


@dataclass(frozen=True)
class Trajectory:
    """One episode. `episode` and `group` are the caller's (the episode's index in its batch, and the
    prompt group GRPO compares within); `segment` numbers the token sequences of one agent run (0
    unless an agent's request did not extend its previous one, see envs/agent_stitch.py)."""

    episode: int
    group: int
    prompt_ids: list[int]
    ids: list[int]  # prompt + every turn + what the environment added between turns
    trained: list[int]  # (len(ids),) 1 where the engine sampled the token
    logprobs: list[float]  # (len(ids),) sampling log-prob where trained, else 0
    turns: list[Turn]
    reward: float  # the sum of the turn rewards (0 for a failed trajectory)
    truncated: bool = False
    truncation: Truncation = ""  # which limit cut it: max_turns, max_tokens, or the environment's own
    failed: bool = False
    error: str = ""  # why it failed (the exception, or the timeout), "" when it did not
    segment: int = 0
    env_time_s: float = 0.0  # wall time inside reset and step (tool calls included)
    tool_time_s: float = 0.0  # of which inside tools (as the environment reports it)
    tool_calls_ok: int = 0
    tool_calls_failed: int = 0  # malformed calls, unknown tools, bad arguments, tool errors

    @property
    def turn_rewards(self) -> list[float]:
        return [t.reward for t in self.turns]

    @property
    def model_tokens(self) -> int:
        return sum(self.trained)

    @property
    def env_tokens(self) -> int:
        """Tokens after the prompt that the environment or the template added."""
        return len(self.ids) - len(self.prompt_ids) - self.model_tokens


@dataclass
class Builder:
    """A trajectory under construction (one per episode in flight)."""

    prompt_ids: list[int]
    ids: list[int] = field(default_factory=list)
    trained: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    env_time_s: float = 0.0
    tool_time_s: float = 0.0
    tool_calls_ok: int = 0
    tool_calls_failed: int = 0

    def __post_init__(self) -> None:
        self.add_context(self.prompt_ids)

    @property
    def response_tokens(self) -> int:
        """Tokens after the prompt so far."""
        return len(self.ids) - len(self.prompt_ids)

    def add_sampled(self, ids: list[int], logprobs: list[float], finish_reason: Literal["stop", "length"]) -> None:
        start = len(self.ids)
        self.ids += ids
        self.trained += [1] * len(ids)
        self.logprobs += logprobs
        self.turns.append(Turn(start, len(self.ids), 0.0, finish_reason))

    def add_context(self, ids: list[int]) -> None:
        """Tokens the model did not sample: the prompt, an observation, the template's markup."""
        self.ids += ids
        self.trained += [0] * len(ids)
        self.logprobs += [0.0] * len(ids)

    def reward_last_turn(self, reward: float) -> None:
        last = self.turns[-1]
        self.turns[-1] = Turn(last.start, last.end, last.reward + reward, last.finish_reason)

    def count(self, seconds: float, info: dict) -> None:
        """Add a reset's or step's wall time and the tool counters its `info` reports."""
        self.env_time_s += seconds
        self.tool_time_s += float(info.get("tool_time_s", 0.0))
        self.tool_calls_ok += int(info.get("tool_calls_ok", 0))
        self.tool_calls_failed += int(info.get("tool_calls_failed", 0))

    def build(self, episode: int, group: int, truncation: Truncation = "", error: str = "",
              segment: int = 0) -> Trajectory:
        reward = 0.0 if error else sum(t.reward for t in self.turns)
        return Trajectory(
            episode, group, list(self.prompt_ids), list(self.ids), list(self.trained), list(self.logprobs),
            list(self.turns), reward, bool(truncation), truncation, bool(error), error, segment,
            self.env_time_s, self.tool_time_s, self.tool_calls_ok, self.tool_calls_failed,
        )
