"""Synthetic, verifiable tasks for the demo, the tests and the benchmarks.

Each task has a short prompt format that a tiny language model learns in minutes and an answer that a
program can check exactly, so SFT, preference and RL runs can all be scored without a judge model.
Everything is seeded: the same (task, kind, n, seed) always gives the same records.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alignkit.errors import AlignkitError

KINDS = ("sft", "prompt", "pair", "unpaired")

# Redraws per example before a repeated prompt is accepted: small task spaces must not loop forever.
_MAX_REDRAWS = 20


@dataclass(frozen=True)
class Task:
    """A verifiable task: ``make_example`` draws a (prompt, answer) pair, ``wrong_answer`` a plausible
    answer that differs from the correct one."""

    name: str
    make_example: Callable[[random.Random], tuple[str, str]]
    wrong_answer: Callable[[random.Random, str, str], str]


def _arithmetic_example(rng: random.Random, digits: int = 2) -> tuple[str, str]:
    a, b = rng.randrange(10**digits), rng.randrange(10**digits)
    return f"{a}+{b}=", str(a + b)


def _arithmetic_wrong(rng: random.Random, prompt: str, answer: str) -> str:
    # A digit swap is the classic slip; it is only plausible when it changes the number and adds no leading 0.
    if len(answer) >= 2 and answer[0] != answer[1] and answer[1] != "0" and rng.random() < 0.5:
        return answer[1] + answer[0] + answer[2:]
    value = int(answer)
    return str(rng.choice([value + d for d in (-3, -2, -1, 1, 2, 3) if value + d >= 0]))


def _sort_example(rng: random.Random) -> tuple[str, str]:
    while True:
        numbers = [rng.randrange(10) for _ in range(rng.randint(4, 6))]
        # All-equal lists have no wrong ordering, so no rejected answer could be made for them.
        if len(set(numbers)) > 1:
            return f"sort: {' '.join(map(str, numbers))} =", " ".join(map(str, sorted(numbers)))


def _sort_wrong(rng: random.Random, prompt: str, answer: str) -> str:
    return " ".join(_swap_adjacent_distinct(rng, answer.split()))


def _reverse_example(rng: random.Random) -> tuple[str, str]:
    while True:
        word = "".join(rng.choice(string.ascii_lowercase[:8]) for _ in range(rng.randint(3, 6)))
        # Words of one repeated letter have no wrong ordering, so no rejected answer could be made for them.
        if len(set(word)) > 1:
            return f"reverse: {word} =", word[::-1]


def _reverse_wrong(rng: random.Random, prompt: str, answer: str) -> str:
    unreversed = answer[::-1]
    if unreversed != answer and rng.random() < 0.5:
        return unreversed
    return "".join(_swap_adjacent_distinct(rng, list(answer)))


def _swap_adjacent_distinct(rng: random.Random, items: list[str]) -> list[str]:
    """``items`` with one adjacent pair of different items swapped: the smallest ordering mistake."""
    i = rng.choice([i for i in range(len(items) - 1) if items[i] != items[i + 1]])
    return items[:i] + [items[i + 1], items[i]] + items[i + 2 :]


TASKS: dict[str, Task] = {
    "arithmetic": Task("arithmetic", _arithmetic_example, _arithmetic_wrong),
    "sort": Task("sort", _sort_example, _sort_wrong),
    "reverse": Task("reverse", _reverse_example, _reverse_wrong),
}


def make_records(task: str, kind: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` records of ``task`` shaped for ``kind``, reproducible from ``seed``.

    Kinds: ``sft`` -> {"prompt", "response", "answer"}; ``prompt`` -> {"prompt", "label"} (for RL with
    ``is_correct`` as verifier); ``pair`` -> {"prompt", "chosen", "rejected"} (rejected is a plausible wrong
    answer); ``unpaired`` -> {"prompt", "completion", "label": bool} (half correct, half wrong, in a seeded
    order). Prompts are unique while the task space allows; the same seed gives the same prompts for every kind.
    Raises ``AlignkitError`` for an unknown task or kind.
    """
    spec = _task(task)
    if kind not in KINDS:
        raise AlignkitError(f"unknown kind '{kind}'; valid kinds: {', '.join(KINDS)}")
    rng = random.Random(seed)
    examples = _unique_examples(spec, n, rng)
    if kind == "sft":
        return [{"prompt": p, "response": a, "answer": a} for p, a in examples]
    if kind == "prompt":
        return [{"prompt": p, "label": a} for p, a in examples]
    if kind == "pair":
        return [{"prompt": p, "chosen": a, "rejected": spec.wrong_answer(rng, p, a)} for p, a in examples]
    labels = [i < (n + 1) // 2 for i in range(n)]
    rng.shuffle(labels)
    return [
        {"prompt": p, "completion": a if ok else spec.wrong_answer(rng, p, a), "label": ok}
        for (p, a), ok in zip(examples, labels, strict=True)
    ]


def write_jsonl(records: list[dict], path: str | Path) -> None:
    """Write ``records`` as JSON lines to ``path``, creating its parent folders."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def is_correct(task: str, label: str, response: str) -> bool:
    """Whether ``response`` is the right answer ``label`` for ``task``: an exact match once surrounding
    whitespace is stripped and inner runs of whitespace are collapsed to one space."""
    _task(task)
    return _normalise(response) == _normalise(label)


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _task(name: str) -> Task:
    if name not in TASKS:
        raise AlignkitError(f"unknown task '{name}'; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


def _unique_examples(task: Task, n: int, rng: random.Random) -> list[tuple[str, str]]:
    seen: set[str] = set()
    examples = []
    for _ in range(n):
        for _ in range(_MAX_REDRAWS):
            prompt, answer = task.make_example(rng)
            if prompt not in seen:
                break
        seen.add(prompt)
        examples.append((prompt, answer))
    return examples
