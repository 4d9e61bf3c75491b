"""Reading tool calls from the text of a model turn; one parser per model family, in a registry.

A parser returns every call attempt in order. A malformed attempt (not JSON, no name, arguments that
are not an object, a call never closed) is kept with its `error`, so the environment can answer the
model with that message instead of failing the trajectory.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alignkit.errors import ConfigError


@dataclass(frozen=True)
class ToolCall:
    """One call attempt: `name` and `arguments`, or `error` (why it cannot be run) when malformed."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class ParsedTurn:
    """A model turn split into its text outside the calls (`content`) and its call attempts."""

    content: str
    calls: list[ToolCall]


def json_arguments(args: Any) -> Any:
    """Arguments written as a JSON string (the OpenAI API's form, and some models') -> their value;
    anything else, or text that is not JSON, as it is."""
    if isinstance(args, str):
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(args) if args.strip() else {}
    return args


def _call_from_json(body: str, number: int) -> ToolCall:
    """`{"name": ..., "arguments": {...}}` (or "parameters", or arguments as a JSON string) -> ToolCall."""
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        return ToolCall("", error=f"tool call {number} is not valid JSON ({e.msg} at character {e.pos})")
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return ToolCall("", error=f'tool call {number} must be an object {{"name": ..., "arguments": {{...}}}}')
    args = json_arguments(obj.get("arguments", obj.get("parameters", {})))
    if not isinstance(args, dict):
        return ToolCall(obj["name"], error=f"tool call {number} ({obj['name']}): the arguments must be a JSON object")
    return ToolCall(obj["name"], args)


_HERMES = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def parse_hermes(text: str) -> ParsedTurn:
    """Hermes / Qwen2.5 / Qwen3: each call is `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`."""
    calls = [_call_from_json(m.group(1).strip(), i + 1) for i, m in enumerate(_HERMES.finditer(text))]
    content = _HERMES.sub("", text)
    if "<tool_call>" in content:  # opened and never closed (often: cut by the token limit)
        calls.append(ToolCall("", error=f"tool call {len(calls) + 1} has no closing </tool_call>"))
        content = content[: content.index("<tool_call>")]
    return ParsedTurn(content.strip(), calls)


def parse_llama3_json(text: str) -> ParsedTurn:
    """Llama 3.1 / 3.2 JSON tool calling: the whole turn is `{"name": ..., "parameters": {...}}`, optionally
    after `<|python_tag|>`; a turn that does not start with `{` is a plain answer."""
    body = text.strip().removeprefix("<|python_tag|>").strip()
    if not body.startswith("{"):
        return ParsedTurn(text.strip(), [])
    return ParsedTurn("", [_call_from_json(body, 1)])


TOOL_PARSERS: dict[str, Callable[[str], ParsedTurn]] = {
    "hermes": parse_hermes,
    "llama3_json": parse_llama3_json,
}


def get_parser(name: str) -> Callable[[str], ParsedTurn]:
    if name not in TOOL_PARSERS:
        close = difflib.get_close_matches(name, list(TOOL_PARSERS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"--env.tool_parser: unknown parser '{name}'{hint} (valid: {', '.join(TOOL_PARSERS)})")
    return TOOL_PARSERS[name]
