"""The one-step environment: the prompt record is the observation, the response is scored by a reward
source of rewards/ (rules, a user function, a reward model, reward servers), and the episode ends.
Single-turn RLVR is this environment run for one turn.
"""

from __future__ import annotations

from typing import Any

from alignkit.envs.protocol import EnvProtocolError, Message, Observation
from alignkit.rewards.base import RewardFn, RewardInput


def prompt_text(prompt: Observation) -> str:
    """What a reward source sees as the prompt: the text, or the last user message of a chat prompt."""
    if isinstance(prompt, str):
        return prompt
    messages = [prompt] if isinstance(prompt, dict) else list(prompt or [])
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    return str(users[-1]) if users else ""


def score_one(reward: RewardFn, prompt: str, response: str, label: Any) -> float:
    """The reward of one sample (a batch of one; the reward's own checks apply)."""
    return float(reward(RewardInput([prompt], [response], [label])).scores[0])


def record_prompt(record: dict[str, Any], key: str) -> str | list[Message]:
    if key not in record:
        fields = ", ".join(sorted(record)) or "none"
        raise EnvProtocolError(f"the prompt record has no field '{key}' (fields present: {fields})")
    return record[key]


class RewardEnv:
    """reset: the observation is `record[prompt_key]` (text or chat messages), the label
    `record[label_key]` (None when absent); step: the reward of the response, terminated."""

    def __init__(self, reward: RewardFn, prompt_key: str = "prompt", label_key: str = "label"):
        self.reward = reward
        self.prompt_key = prompt_key
        self.label_key = label_key

    def reset(self, seed: int | None = None, **record: Any) -> tuple[Observation, dict[str, Any]]:
        self.prompt = record_prompt(record, self.prompt_key)
        self.label = record.get(self.label_key)
        return self.prompt, {}

    def step(self, action: str) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        return None, score_one(self.reward, prompt_text(self.prompt), action, self.label), True, False, {}
