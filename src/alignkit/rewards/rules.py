"""Built-in rule rewards, each 1.0 when the rule holds for a sample and 0.0 when it does not.

- `math`: the response's final answer equals the label as mathematics (`\\boxed{1/2}` equals `0.5`),
  decided by the math-verify library; the label must be given.
- `exact`: the response equals the label once whitespace is stripped and inner runs collapsed, the
  same test as `alignkit.data.synth.is_correct`, so it scores the synthetic tasks by their answers.
- `boxed`: the response holds a non-empty `\\boxed{...}`, the answer format of math datasets.
- `format:REGEX`: the whole response (surrounding whitespace ignored) matches the regular expression,
  with `.` matching newlines, e.g. `format:<think>.*</think>.*`.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alignkit.errors import ConfigError
from alignkit.rewards.base import RewardInput, RewardOutput
from alignkit.rewards.validate import RewardError, check_scores, labels_of, sample_name

RULES = ("math", "exact", "boxed", "format")

# Bounds each math-verify parse and comparison where a signal alarm can enforce it (see _math_timeout).
MATH_TIMEOUT_S = 5


def _math_timeout() -> int | None:
    # math-verify times out with signal.alarm, which works on the main thread only; elsewhere (the
    # reward server scores on a worker thread) it runs unbounded and the HTTP client's timeout guards.
    return MATH_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def math_equal(response: str, label: str) -> bool:
    from math_verify import parse, verify

    timeout = _math_timeout()
    gold = parse(label, parsing_timeout=timeout)
    if not gold:
        raise ValueError(f"math-verify cannot parse the label {label!r}")
    return verify(gold, parse(response, parsing_timeout=timeout), timeout_seconds=timeout)


def exact_equal(response: str, label: str) -> bool:
    return " ".join(response.split()) == " ".join(label.split())


def has_boxed(response: str) -> bool:
    """Whether some `\\boxed{...}` closes and holds more than whitespace (braces may nest inside)."""
    for start in (m.end() for m in re.finditer(r"\\boxed\{", response)):
        depth = 1
        for j in range(start, len(response)):
            depth += {"{": 1, "}": -1}.get(response[j], 0)
            if depth == 0:
                if response[start:j].strip():
                    return True
                break
    return False


@dataclass(frozen=True)
class RuleReward:
    """A `RewardFn` scoring each sample by `check(response, label)`; `needs_label` rules fail on a
    sample without one."""

    name: str
    check: Callable[[str, Any], bool]
    needs_label: bool

    def __call__(self, batch: RewardInput) -> RewardOutput:
        labels = labels_of(batch)
        values = []
        for i, (response, label) in enumerate(zip(batch.responses, labels, strict=True)):
            if self.needs_label and label is None:
                raise RewardError(f"rule '{self.name}' needs a label; {sample_name(batch, i)} has none")
            try:
                ok = self.check(response, None if label is None else str(label))
            except ValueError as e:
                raise RewardError(f"rule '{self.name}': {sample_name(batch, i)}: {e}") from None
            values.append(float(ok))
        return RewardOutput(check_scores(values, batch, f"rule '{self.name}'"))


def _format_rule(pattern: str) -> Callable[[str, Any], bool]:
    try:
        regex = re.compile(pattern, re.DOTALL)
    except re.error as e:
        raise ConfigError(f"--reward.rules format:{pattern}: not a valid regular expression ({e})") from None
    return lambda response, _label: regex.fullmatch(response.strip()) is not None


def build_rule(spec: str) -> RuleReward:
    """`math`, `exact`, `boxed` or `format:REGEX` -> its RewardFn."""
    name, colon, arg = spec.partition(":")
    if name == "format":
        if not arg:
            raise ConfigError("--reward.rules format needs a pattern: format:REGEX")
        return RuleReward("format", _format_rule(arg), needs_label=False)
    if colon:
        raise ConfigError(f"--reward.rules {spec}: only the format rule takes an argument")
    if name == "math":
        return RuleReward("math", math_equal, needs_label=True)
    if name == "exact":
        return RuleReward("exact", exact_equal, needs_label=True)
    if name == "boxed":
        return RuleReward("boxed", lambda response, _label: has_boxed(response), needs_label=False)
    close = difflib.get_close_matches(name, RULES, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(
        f"--reward.rules: unknown rule '{name}'{hint} (valid: math, exact, boxed, format:REGEX)"
    )


def label_rules(specs: list[str]) -> list[str]:
    """The rules among `specs` that compare each response with the data's label (checked up front)."""
    return [r.name for r in map(build_rule, specs) if r.needs_label]
