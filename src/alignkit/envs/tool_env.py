"""The tool environment: the model calls tools until it answers without a call; the answer is scored.

Each turn with tool calls is answered with one tool message per call, in order (results, or error
messages for malformed calls, unknown tools and bad arguments), reward 0. A turn without a call is
the final answer: a reward source of rewards/ scores it against the record's label and the episode
ends. Per step, `info` reports `tool_calls_ok`, `tool_calls_failed` and `tool_time_s`.
"""

from __future__ import annotations

from typing import Any

from alignkit.envs.protocol import Message, Observation
from alignkit.envs.reward_env import RewardEnv
from alignkit.envs.tool_parsers import get_parser
from alignkit.envs.tools import Tool, run_call
from alignkit.rewards.base import RewardFn


class ToolEnv(RewardEnv):
    """`tools` the model may call; `reward` scores the final answer; `parser` names the call format
    (envs/tool_parsers.py). A text prompt gets `system_prompt` (when given) as a system message."""

    def __init__(self, tools: list[Tool], reward: RewardFn, parser: str = "hermes", prompt_key: str = "prompt",
                 label_key: str = "label", system_prompt: str = ""):
        super().__init__(reward, prompt_key, label_key)
        self.by_name = {t.name: t for t in tools}
        self.tools = [t.schema for t in tools]  # shown to the model by the chat template
        self.parse = get_parser(parser)
        self.system_prompt = system_prompt

    def reset(self, seed: int | None = None, **record: Any) -> tuple[Observation, dict[str, Any]]:
        prompt, info = super().reset(seed, **record)
        if isinstance(prompt, str):
            system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            return system + [{"role": "user", "content": prompt}], info
        return prompt, info

    def step(self, action: str) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        calls = self.parse(action).calls
        if not calls:  # the final answer
            return super().step(action)
        results = [run_call(self.by_name, c) for c in calls]
        answers: list[Message] = [r.message for r in results]
        ok = sum(r.ok for r in results)
        info = {"tool_calls_ok": ok, "tool_calls_failed": len(results) - ok,
                "tool_time_s": sum(r.seconds for r in results)}
        return answers, 0.0, False, False, info
