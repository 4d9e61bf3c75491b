"""The synthetic calculator tool task: seeded records, the share of tool transcripts, the tool."""

from __future__ import annotations

import pytest

from alignkit.envs.calculator_task import calc, records, tool_call_text
from alignkit.envs.tools import ToolError
from alignkit.errors import AlignkitError


def test_records_are_seeded_and_shaped():
    sft = records("sft", 400, seed=3, tool_rate=0.25)
    assert sft == records("sft", 400, seed=3, tool_rate=0.25)
    with_tool = [r for r in sft if len(r["messages"]) == 4]
    assert 0.18 < len(with_tool) / len(sft) < 0.32
    user, call, tool, answer = with_tool[0]["messages"]
    a, b = map(int, user["content"].removesuffix("=").split("*"))
    assert call == {"role": "assistant", "content": tool_call_text(f"{a}*{b}")}
    assert tool == {"role": "tool", "content": str(a * b)} and answer == {"role": "assistant", "content": str(a * b)}
    direct = next(r for r in sft if len(r["messages"]) == 2)["messages"]
    assert direct[1]["content"] == str(eval(direct[0]["content"].removesuffix("=")))
    prompts = records("prompt", 5, seed=1)
    assert all(set(r) == {"prompt", "label"} and str(eval(r["prompt"][:-1])) == r["label"] for r in prompts)
    with pytest.raises(AlignkitError) as e:
        records("pair", 1)
    assert str(e.value) == "the calculator task has kinds sft and prompt, got 'pair'"


def test_calc_tool():
    assert calc("37*48") == "1776" and calc(" 12 * 3 ") == "36"
    with pytest.raises(ToolError) as e:
        calc("37+48")
    assert str(e.value) == "cannot evaluate '37+48': write two integers joined by '*'"
    assert tool_call_text("1*2") == '<tool_call>{"name": "calc", "arguments": {"expression": "1*2"}}</tool_call>'
