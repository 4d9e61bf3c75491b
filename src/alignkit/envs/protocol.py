"""The environment protocol: Gymnasium-style `reset` and `step` over text, as in the gem-llm library.

    class MyEnv:
        def reset(self, seed=None, **record):        # or: async def reset(...)
            return observation, info
        def step(self, action: str):                  # or: async def step(...)
            return observation, reward, terminated, truncated, info

- One instance per trajectory: the factory builds it, `reset` receives the episode's seed and every
  field of the prompt record as keyword arguments (a record's own `seed` field, when present, is the
  seed). Either method may be a coroutine function; both then run on one shared event loop.
- An observation is text (one user message), a chat message `{"role", "content"}` or a list of them
  (a tool result is `{"role": "tool", "content": ...}`). The observation of `reset` is the prompt.
  The observation returned with `terminated` or `truncated` is not shown to the model.
- `reward` is a finite number; the trajectory's reward is the sum over its steps. `terminated`: the
  task reached its end; `truncated`: it was cut short (a time limit). A step that says both counts as
  terminated.
- `info` may report `tool_calls_ok`, `tool_calls_failed` and `tool_time_s` (counted in the metrics)
  and `use_tool: True` (the text observation is a tool result, as gem's tool wrappers say).
- An optional attribute `tools`: OpenAI-style JSON schemas of the tools the model may call, passed to
  the chat template with the prompt.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

Message = dict[str, Any]
Observation = str | Message | list[Message] | None


class Environment(Protocol):
    def reset(self, seed: int | None = None, **record: Any) -> tuple[Observation, dict[str, Any]]: ...

    def step(self, action: str) -> tuple[Observation, float, bool, bool, dict[str, Any]]: ...


EnvFactory = Callable[[], Environment]
"""Builds one fresh environment (called once per trajectory)."""


class EnvProtocolError(Exception):
    """An environment returned something the protocol does not allow (a bug in the environment)."""


def as_messages(observation: Observation, tool: bool = False) -> list[Message]:
    """The chat messages an observation adds: text -> one user (or tool) message; None or "" -> none."""
    if observation is None or observation == "":
        return []
    if isinstance(observation, str):
        return [{"role": "tool" if tool else "user", "content": observation}]
    messages = [observation] if isinstance(observation, dict) else observation
    if not isinstance(messages, list):
        raise EnvProtocolError(f"an observation must be text or chat messages, got {type(observation).__name__}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
            raise EnvProtocolError(f"observation message {i} must be a dict with 'role' and 'content', got {m!r}")
    return list(messages)


@dataclass(frozen=True)
class StepResult:
    """A checked `step` result."""

    messages: list[Message]
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


def check_step(result: Any) -> StepResult:
    """`(observation, reward, terminated, truncated, info)` -> StepResult, or EnvProtocolError."""
    if not isinstance(result, tuple | list) or len(result) != 5:
        raise EnvProtocolError(
            "step must return (observation, reward, terminated, truncated, info), got "
            f"{type(result).__name__}{f' of length {len(result)}' if isinstance(result, tuple | list) else ''}"
        )
    observation, reward, terminated, truncated, info = result
    if hasattr(reward, "item"):  # a one-element tensor or numpy scalar
        reward = reward.item()
    if isinstance(reward, bool) or not isinstance(reward, numbers.Real) or not math.isfinite(reward):
        raise EnvProtocolError(f"step returned the reward {reward!r}; it must be a finite number")
    info = dict(info or {})
    return StepResult(as_messages(observation, bool(info.get("use_tool"))), float(reward), bool(terminated),
                      bool(truncated), info)


def check_reset(result: Any) -> tuple[list[Message], dict[str, Any]]:
    """`(observation, info)` -> (the prompt messages, info), or EnvProtocolError."""
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise EnvProtocolError(f"reset must return (observation, info), got {type(result).__name__}")
    messages = as_messages(result[0])
    if not messages:
        raise EnvProtocolError("reset returned an empty observation: the prompt needs at least one message")
    return messages, dict(result[1] or {})
