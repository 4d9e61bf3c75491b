"""Stitching an agent's requests into token-exact trajectories (one `RunRecord` per agent run).

Every request's prompt ids and completion ids are recorded. The rule:

- A chat request whose messages are the conversation so far (the previous request's messages, then
  the assistant message returned to it) followed by new messages EXTENDS it: its prompt is the
  previous prompt + completion ids + the ids the chat template adds after a turn for the new
  messages (envs/chat_format.py), so nothing sampled is re-tokenised.
- Any other request is tokenised on its own: a chat request renders its messages with the template;
  a completions request takes its token ids as given, or tokenises its text.
- A request whose prompt ids start with all the ids of the current segment (its prompt and every
  completion so far) continues that segment, the extra ids added as context (not trained). Otherwise
  it STARTS A NEW SEGMENT: an agent that edits or summarises its history, or samples two answers to
  one prompt, leaves several token sequences, each its own trajectory with the run's reward.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from alignkit.envs.chat_format import ChatFormat
from alignkit.envs.protocol import Message
from alignkit.envs.tool_parsers import ParsedTurn, json_arguments
from alignkit.envs.trajectory import Builder, Trajectory, Truncation
from alignkit.rollout.base import Generation


def _text(content: Any) -> str:
    """OpenAI message content: a string, None, or a list of parts ({"type": "text", "text": ...})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def _call(tc: dict[str, Any]) -> dict[str, Any]:
    fn = tc.get("function", tc)
    return {"type": "function", "function": {"name": fn.get("name", ""), "arguments": json_arguments(fn.get("arguments", {}))}}


def normalise(message: dict[str, Any]) -> Message:
    """A request message in the form the chat template reads and that compares equal across requests:
    role, text content, tool calls with parsed arguments, and a tool message's name and call id."""
    out: Message = {"role": message.get("role", ""), "content": _text(message.get("content"))}
    if message.get("tool_calls"):
        out["tool_calls"] = [_call(tc) for tc in message["tool_calls"]]
    for key in ("name", "tool_call_id"):
        if message.get(key):
            out[key] = message[key]
    return out


def reply_message(parsed: ParsedTurn | None, text: str) -> dict[str, Any]:
    """The assistant message returned for a completion: its text, and its well-formed tool calls when
    the request offered tools (OpenAI format: arguments as a JSON string)."""
    if parsed is None:
        return {"role": "assistant", "content": text}
    calls = [c for c in parsed.calls if not c.error]
    message: dict[str, Any] = {"role": "assistant", "content": parsed.content if calls else text}
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for i, c in enumerate(calls)
        ]
    return message


@dataclass
class _Segment:
    traj: Builder
    last: Generation


class RunRecord:
    """The requests of one agent run, stitched into segments (thread-safe)."""

    def __init__(self):
        self.segments: list[_Segment] = []
        self.conversation: list[Message] | None = None  # the chat so far, as the next request must repeat it
        self.format: ChatFormat | None = None
        self.truncation: Truncation = ""
        self.requests = 0
        self.model_wait_s = 0.0  # time requests spent waiting for the engine
        self.tool_calls_ok = 0
        self.tool_calls_failed = 0
        self.finished = False  # the agent returned (or raised)
        self.lock = threading.Lock()

    def tokens_after_prompt(self, prompt_ids: list[int]) -> int:
        """Tokens after its segment's prompt that `prompt_ids` already hold (0 if they start a new segment)."""
        with self.lock:
            seg = self.segments[-1] if self.segments else None
            if seg is None or prompt_ids[: len(seg.traj.ids)] != seg.traj.ids:
                return 0
            return len(prompt_ids) - len(seg.traj.prompt_ids)

    def chat_prompt(self, fmt: ChatFormat, messages: list[Message]) -> list[int]:
        """Prompt ids of a chat request (`messages` normalised): extending the conversation when the
        request repeats it (same template settings and tools), else rendered on its own."""
        with self.lock:
            conv, seg = self.conversation, self.segments[-1] if self.segments else None
            same = self.format is not None and (fmt.tools, fmt.kwargs) == (self.format.tools, self.format.kwargs)
            if seg is not None and conv is not None and same and messages[: len(conv)] == conv:
                last = seg.last
                ended = last.finish_reason == "stop" and bool(last.response_ids)
                added = fmt.continuation_ids(messages[len(conv):], last.response_ids[-1] if ended else None, ended)
                return seg.traj.ids + added
        return fmt.prompt_ids(messages)

    def record(self, prompt_ids: list[int], gen: Generation, seconds: float,
               chat: tuple[ChatFormat, list[Message], dict[str, Any]] | None = None,
               parsed: ParsedTurn | None = None) -> None:
        """Add a completion to the segment its prompt continues, or to a new one. `chat`: the format,
        the request's messages and the reply message, for the next request to extend."""
        with self.lock:
            seg = self.segments[-1] if self.segments else None
            if seg is not None and prompt_ids[: len(seg.traj.ids)] == seg.traj.ids:
                seg.traj.add_context(prompt_ids[len(seg.traj.ids):])
                seg.last = gen
            else:
                seg = _Segment(Builder(list(prompt_ids)), gen)
                self.segments.append(seg)
            seg.traj.add_sampled(gen.response_ids, gen.logprobs, gen.finish_reason)
            self.model_wait_s += seconds
            if parsed is not None:
                bad = sum(1 for c in parsed.calls if c.error)
                self.tool_calls_ok += len(parsed.calls) - bad
                self.tool_calls_failed += bad
            self.format, self.conversation = (chat[0], chat[1] + [normalise(chat[2])]) if chat else (None, None)

    def trajectories(self, episode: int, group: int, reward: float, error: str, wall_s: float) -> list[Trajectory]:
        """One trajectory per segment, each with the run's reward on its last turn. A run that ended
        with an error fails (every segment), unless a limit had cut it: then it is truncated, reward 0."""
        if error and self.truncation:
            error, reward = "", 0.0
        if not self.segments:
            return [Builder([]).build(episode, group, error=error or "the agent made no request")]
        out = []
        for k, seg in enumerate(self.segments):
            seg.traj.reward_last_turn(reward)
            if k == 0:
                seg.traj.env_time_s = max(wall_s - self.model_wait_s, 0.0)
                seg.traj.tool_calls_ok, seg.traj.tool_calls_failed = self.tool_calls_ok, self.tool_calls_failed
            out.append(seg.traj.build(episode, group, self.truncation, error, segment=k))
        return out
