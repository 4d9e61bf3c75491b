"""Tools: plain Python functions (sync or async) with type hints and a Google-style docstring.

    def add(a: int, b: int) -> int:
        \"\"\"Add two integers.

        Args:
            a: The first number.
            b: The second number.
        \"\"\"
        return a + b

The schema the chat template shows the model is transformers' own `get_json_schema(add)`. A call is
checked against it before it runs (a missing or unknown argument, a value of the wrong JSON type):
a bad call, an unknown tool, or a tool raising `ToolError` is answered with an error message the
model reads, and counted as a failed call. Any other exception in a tool is a bug in the tool: it
ends the trajectory as failed (see envs/loop.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alignkit.envs.calls import resolve
from alignkit.envs.protocol import Message
from alignkit.envs.tool_parsers import ToolCall
from alignkit.errors import ConfigError
from alignkit.user_code import load_object


class ToolError(Exception):
    """Raise from a tool to answer the model with `error: <message>` (a failed call, not a failed trajectory)."""


@dataclass(frozen=True)
class Tool:
    name: str
    fn: Callable[..., Any]
    schema: dict[str, Any]  # {"type": "function", "function": {"name", "description", "parameters"}}


def tool_from_function(fn: Callable[..., Any], source: str = "") -> Tool:
    from transformers.utils import get_json_schema

    try:
        schema = get_json_schema(fn)
    except Exception as e:  # transformers raises its own parsing exceptions for a missing docstring or hint
        raise ConfigError(f"{source or getattr(fn, '__name__', fn)}: cannot describe the tool: {e}") from None
    return Tool(schema["function"]["name"], fn, schema)


def load_tools(specs: list[str]) -> list[Tool]:
    """`--env.tools path/to/file.py:name ...` -> Tools, names distinct."""
    tools = [tool_from_function(load_object(s, "--env.tools"), f"--env.tools {s}") for s in specs]
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise ConfigError(f"--env.tools: tool names must differ, got {', '.join(names)}")
    return tools


_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "integer": int, "number": (int, float), "boolean": bool, "array": (list, tuple),
    "object": dict, "null": type(None),
}


def _type_ok(value: Any, spec: dict[str, Any]) -> bool:
    if value is None and spec.get("nullable"):
        return True
    if "enum" in spec and value not in spec["enum"]:
        return False
    kinds = spec.get("type")
    if kinds is None:
        return True
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        if isinstance(value, bool) and kind in ("integer", "number"):
            continue  # JSON true is not a number, though Python's bool is an int
        if isinstance(value, _JSON_TYPES.get(kind, object)):
            return True
    return False


def check_arguments(tool: Tool, arguments: dict[str, Any]) -> str:
    """Why `arguments` do not fit `tool`'s schema, or "" when they do."""
    params = tool.schema["function"].get("parameters", {})
    props = params.get("properties", {})
    for name in params.get("required", []):
        if name not in arguments:
            return f"{tool.name}: missing argument '{name}'"
    for name, value in arguments.items():
        if name not in props:
            return f"{tool.name}: unknown argument '{name}' (arguments: {', '.join(props) or 'none'})"
        if not _type_ok(value, props[name]):
            return f"{tool.name}: argument '{name}' must be {props[name].get('type', 'valid')}, got {json.dumps(value)}"
    return ""


@dataclass(frozen=True)
class CallResult:
    message: Message  # the tool message the model reads
    ok: bool
    seconds: float


def _error(name: str, text: str) -> Message:
    return {"role": "tool", "name": name, "content": f"error: {text}"}


def run_call(tools: dict[str, Tool], call: ToolCall) -> CallResult:
    """Run one parsed call (awaiting an async tool on the shared loop); a malformed call, an unknown
    tool, bad arguments or a ToolError give an error message; other exceptions propagate."""
    if call.error:
        return CallResult(_error(call.name, call.error), False, 0.0)
    tool = tools.get(call.name)
    if tool is None:
        return CallResult(_error(call.name, f"unknown tool '{call.name}' (tools: {', '.join(tools) or 'none'})"),
                          False, 0.0)
    problem = check_arguments(tool, call.arguments)
    if problem:
        return CallResult(_error(call.name, problem), False, 0.0)
    start = time.monotonic()
    try:
        out = resolve(tool.fn(**call.arguments))
    except ToolError as e:
        return CallResult(_error(call.name, f"{call.name}: {e}"), False, time.monotonic() - start)
    content = out if isinstance(out, str) else json.dumps(out)
    return CallResult({"role": "tool", "name": call.name, "content": content}, True, time.monotonic() - start)
