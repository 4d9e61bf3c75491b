"""Typed, frozen configuration of multi-turn rollouts: the environment, its tools, the limits of a
trajectory, and the agent endpoint (see docs/agents.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EnvConfig:
    """Where multi-turn trajectories come from and how far they may run."""

    class_: str = ""
    """--env.class: an environment class in a file, as path/to/file.py:Class (one instance per trajectory)."""
    gem: str = ""
    """A gem-llm environment id, e.g. game:GuessTheNumber-v0-easy or rg:basic_arithmetic (pip install 'alignkit[envs]')."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the environment's constructor (--env.class) or gem.make (--env.gem)."""
    tools: list[str] = field(default_factory=list)
    """Tool functions, each path/to/file.py:name (the tool environment): the model calls them until it answers without a call, and --reward.* scores that answer."""
    tool_parser: str = "hermes"
    """How tool calls are read from the model's text: hermes (<tool_call>{json}</tool_call>: Qwen, Hermes) or llama3_json."""
    system_prompt: str = ""
    """A system message put before a text prompt of the tool environment (empty: none)."""
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra variables for the chat template, e.g. {"enable_thinking": false}."""
    max_turns: int = 8
    """Most model turns per trajectory; a trajectory still going after this many is marked truncated."""
    max_tokens: int = 1024
    """Most tokens after the prompt (model and environment together); a trajectory that reaches it is marked truncated."""
    step_timeout_s: float = 60.0
    """Seconds one environment reset or step (tool calls included) may take; a slower one fails its trajectory."""
    agent_timeout_s: float = 600.0
    """With --agent: seconds one agent run may take in all; a slower one fails its trajectory."""
    agent_batch_wait_ms: float = 20.0
    """With --agent: how long the first waiting request waits for the other agents' requests to join its batch."""
