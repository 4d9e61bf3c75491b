"""Tools: schemas from transformers, call parsing, argument checks, error answers vs failures."""

from __future__ import annotations

import asyncio
import textwrap

import pytest
from envs_helpers import ScriptedEngine

from alignkit.config.sampling import SamplingParams
from alignkit.envs.loop import Episode, Limits, run_episodes
from alignkit.envs.tool_env import ToolEnv
from alignkit.envs.tool_parsers import ToolCall, get_parser, parse_hermes, parse_llama3_json
from alignkit.envs.tools import ToolError, load_tools, run_call, tool_from_function
from alignkit.errors import ConfigError
from alignkit.rewards.rules import build_rule


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


def divide(a: float, b: float) -> float:
    """Divide a by b.

    Args:
        a: The dividend.
        b: The divisor.
    """
    if b == 0:
        raise ToolError("division by zero")
    return a / b


async def lookup(key: str) -> dict:
    """Look a key up.

    Args:
        key: The key.
    """
    await asyncio.sleep(0)
    return {"key": key, "value": len(key)}


def crash(x: int) -> int:
    """A tool with a bug.

    Args:
        x: Anything.
    """
    raise KeyError("internal")


TOOLS = {t.name: t for t in map(tool_from_function, (add, divide, lookup, crash))}


def test_schema_comes_from_transformers():
    assert TOOLS["add"].schema == {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer", "description": "The first number."},
                               "b": {"type": "integer", "description": "The second number."}},
                "required": ["a", "b"],
            },
            "return": {"type": "integer"},
        },
    }


def test_undocumented_function_is_a_config_error():
    def nodoc(x: int) -> int:
        return x

    with pytest.raises(ConfigError) as e:
        tool_from_function(nodoc, "--env.tools t.py:nodoc")
    assert str(e.value).startswith("--env.tools t.py:nodoc: cannot describe the tool: ")


def test_hermes_parser():
    text = ('I will add.<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
            '<tool_call>{"name": "lookup", "arguments": "{\\"key\\": \\"k\\"}"}</tool_call>'
            '<tool_call>{"name": "add", "arguments": {"a": 1,}}</tool_call>'
            '<tool_call>{"arguments": {}}</tool_call><tool_call>{"name": "add", "arguments": [1]}</tool_call> done'
            '<tool_call>{"name": "add"')
    parsed = parse_hermes(text)
    assert parsed.content == "I will add. done"
    assert parsed.calls == [
        ToolCall("add", {"a": 1, "b": 2}),
        ToolCall("lookup", {"key": "k"}),
        ToolCall("", error="tool call 3 is not valid JSON (Expecting property name enclosed in double quotes at character 37)"),
        ToolCall("", error='tool call 4 must be an object {"name": ..., "arguments": {...}}'),
        ToolCall("add", error="tool call 5 (add): the arguments must be a JSON object"),
        ToolCall("", error="tool call 6 has no closing </tool_call>"),
    ]
    assert parse_hermes("just an answer") == parse_hermes("just an answer")
    assert parse_hermes("  just an answer ").calls == [] and parse_hermes(" 42 ").content == "42"


def test_llama3_json_parser_and_registry():
    assert parse_llama3_json('<|python_tag|>{"name": "add", "parameters": {"a": 1, "b": 2}}').calls == [
        ToolCall("add", {"a": 1, "b": 2})]
    assert parse_llama3_json("The answer is 3.").calls == []
    with pytest.raises(ConfigError) as e:
        get_parser("hermess")
    assert str(e.value) == "--env.tool_parser: unknown parser 'hermess'; did you mean 'hermes'? (valid: hermes, llama3_json)"


@pytest.mark.parametrize(("call", "content", "ok"), [
    (ToolCall("add", {"a": 2, "b": 3}), "5", True),
    (ToolCall("lookup", {"key": "abc"}), '{"key": "abc", "value": 3}', True),
    (ToolCall("divide", {"a": 1, "b": 4}), "0.25", True),
    (ToolCall("divide", {"a": 1, "b": 0}), "error: divide: division by zero", False),
    (ToolCall("mul", {}), "error: unknown tool 'mul' (tools: add, divide, lookup, crash)", False),
    (ToolCall("add", {"a": 1}), "error: add: missing argument 'b'", False),
    (ToolCall("add", {"a": 1, "b": 2, "c": 3}), "error: add: unknown argument 'c' (arguments: a, b)", False),
    (ToolCall("add", {"a": "1", "b": 2}), 'error: add: argument \'a\' must be integer, got "1"', False),
    (ToolCall("add", {"a": True, "b": 2}), "error: add: argument 'a' must be integer, got true", False),
    (ToolCall("", error="tool call 1 is not valid JSON (x)"), "error: tool call 1 is not valid JSON (x)", False),
])
def test_run_call_answers(call, content, ok):
    result = run_call(TOOLS, call)
    assert result.message["role"] == "tool" and result.message["content"] == content and result.ok == ok


def test_a_tool_bug_propagates():
    with pytest.raises(KeyError):
        run_call(TOOLS, ToolCall("crash", {"x": 1}))


def _calls_then_answers(prompt: str) -> str:
    if "error:" in prompt:  # the second turn, after the answers
        return "5"
    return ('<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'
            '<tool_call>{"name": "add", "arguments": {"a": 2,</tool_call>'
            '<tool_call>{"name": "nope", "arguments": {}}</tool_call>')


def run_tool_episodes(tokenizer, reply, tools=("add",), prompts=("2+3?",)):
    engine = ScriptedEngine(tokenizer, reply)
    env = lambda: ToolEnv([TOOLS[n] for n in tools], build_rule("exact"))  # noqa: E731
    return run_episodes(engine, tokenizer, env, [Episode({"prompt": p, "label": "5"}) for p in prompts],
                        SamplingParams(max_new_tokens=512), Limits(step_timeout_s=5))


def test_malformed_calls_are_answered_and_counted_not_raised(tokenizer):
    (traj,) = run_tool_episodes(tokenizer, _calls_then_answers)
    assert not traj.failed and traj.reward == 1.0 and len(traj.turns) == 2
    assert traj.tool_calls_ok == 1 and traj.tool_calls_failed == 2
    between = tokenizer.decode(traj.ids[traj.turns[0].end:traj.turns[1].start])
    assert between == ("\n<|im_start|>tool\n5<|im_end|>\n"
                       "<|im_start|>tool\nerror: tool call 2 is not valid JSON (Expecting property name enclosed in "
                       "double quotes at character 37)<|im_end|>\n"
                       "<|im_start|>tool\nerror: unknown tool 'nope' (tools: add)<|im_end|>\n<|im_start|>assistant\n")


def test_a_tool_that_raises_fails_the_trajectory(tokenizer):
    def reply(prompt):
        return '<tool_call>{"name": "crash", "arguments": {"x": 1}}</tool_call>' if "buggy" in prompt else "5"

    bad, good = run_tool_episodes(tokenizer, reply, tools=("crash",), prompts=("buggy", "fine"))
    assert bad.failed and bad.error.startswith("step 1: KeyError: 'internal' (test_envs_tools.py:")
    assert not good.failed and good.reward == 1.0


def test_load_tools_from_a_file(tmp_path):
    path = tmp_path / "tools.py"
    path.write_text(textwrap.dedent('''
        def double(x: int) -> int:
            """Double a number.

            Args:
                x: The number.
            """
            return 2 * x
    '''))
    (tool,) = load_tools([f"{path}:double"])
    assert tool.name == "double" and tool.fn(4) == 8
    with pytest.raises(ConfigError) as e:
        load_tools([f"{path}:double", f"{path}:double"])
    assert str(e.value) == "--env.tools: tool names must differ, got double, double"
    with pytest.raises(ConfigError) as e:
        load_tools([f"{path}:triple"])
    assert str(e.value) == f"--env.tools: {path} defines no 'triple' (callables in it: double)"
