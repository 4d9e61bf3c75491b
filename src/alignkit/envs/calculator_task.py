"""A calculator tool task: multiply two 2-digit numbers, with `calc` as the tool. It drives the tool and
agent tests (examples/agents/calculator.py uses `calc`). It is not a learnable example: after SFT on its
transcripts the tiny CPU model ignored the prompt (the guess game, envs/guess_task.py, is the one RL
improves). The SFT transcripts call the tool in a share `tool_rate` of the episodes and answer at once
in the rest.

    records("sft", n)    -> {"messages": [user, assistant <tool_call>, tool, assistant answer]} or
                            {"messages": [user, assistant answer]}
    records("prompt", n) -> {"prompt": "37*48=", "label": "1776"}
"""

from __future__ import annotations

import json
import random

from alignkit.envs.tools import ToolError
from alignkit.errors import AlignkitError


def calc(expression: str) -> str:
    """Multiply two integers.

    Args:
        expression: Two integers joined by '*', e.g. 12*34.
    """
    a, star, b = expression.partition("*")
    if not star or not a.strip().isdigit() or not b.strip().isdigit():
        raise ToolError(f"cannot evaluate {expression!r}: write two integers joined by '*'")
    return str(int(a) * int(b))


def tool_call_text(expression: str) -> str:
    """The Hermes-style call of `calc` the transcripts teach."""
    return "<tool_call>" + json.dumps({"name": "calc", "arguments": {"expression": expression}}) + "</tool_call>"


def records(kind: str, n: int, seed: int = 0, tool_rate: float = 0.5) -> list[dict]:
    """`n` seeded records of the task for `kind` sft or prompt (see the module doc)."""
    if kind not in ("sft", "prompt"):
        raise AlignkitError(f"the calculator task has kinds sft and prompt, got '{kind}'")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randrange(10, 100), rng.randrange(10, 100)
        question, answer = f"{a}*{b}=", str(a * b)
        if kind == "prompt":
            out.append({"prompt": question, "label": answer})
            continue
        messages = [{"role": "user", "content": question}]
        if rng.random() < tool_rate:
            messages += [{"role": "assistant", "content": tool_call_text(f"{a}*{b}")},
                         {"role": "tool", "content": answer}]
        messages.append({"role": "assistant", "content": answer})
        out.append({"messages": messages})
    return out
