"""Built-in rule rewards on hand examples."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from alignkit.data.synth import TASKS, is_correct, make_records
from alignkit.errors import ConfigError
from alignkit.rewards.base import RewardInput
from alignkit.rewards.rules import build_rule, has_boxed
from alignkit.rewards.validate import RewardError


def score(rule: str, responses: list[str], labels: list | None = None) -> list[float]:
    batch = RewardInput([f"p{i}" for i in range(len(responses))], responses, labels or [])
    out = build_rule(rule)(batch)
    assert out.scores.dtype == torch.float32 and out.scores.shape == (len(responses),)
    return out.scores.tolist()


def test_math_equal_by_value():
    responses = ["so the answer is \\boxed{1/2}", "2", "The answer is \\boxed{2}.", "2+1", "no number here"]
    assert score("math", responses, ["0.5", "3", "2", "3", "2"]) == [1.0, 0.0, 1.0, 1.0, 0.0]


def test_math_label_as_latex_and_int():
    assert score("math", ["0.5", "4"], ["\\frac{1}{2}", 4]) == [1.0, 1.0]


def test_math_off_the_main_thread():
    # math-verify's signal-based timeout would raise off the main thread; the rule must not.
    with ThreadPoolExecutor(1) as pool:
        got = pool.submit(score, "math", ["\\boxed{1/2}", "3"], ["0.5", "2"]).result(timeout=30)
    assert got == [1.0, 0.0]


def test_math_needs_a_label():
    batch = RewardInput(["What is 1+1?", "What is 2+2?"], ["2", "4"], ["2", None])
    with pytest.raises(
        RewardError, match=r"^rule 'math' needs a label; sample 1 \(prompt 'What is 2\+2\?'\) has none$"
    ):
        build_rule("math")(batch)


def test_exact_strips_and_collapses_whitespace():
    assert score("exact", ["  4 \n", "1 2  3", "5", "12"], ["4", "1 2 3", "4", "1 2"]) == [1.0, 1.0, 0.0, 0.0]


def test_exact_agrees_with_synth_is_correct():
    for task in TASKS:
        answers = [r["answer"] for r in make_records(task, "sft", 20, seed=1)]
        pairs = make_records(task, "pair", 20, seed=1)
        responses = (
            [r["chosen"] for r in pairs] + [r["rejected"] for r in pairs] + [f" {a}  " for a in answers]
        )
        labels = answers * 3
        want = [float(is_correct(task, lab, resp)) for resp, lab in zip(responses, labels, strict=True)]
        assert score("exact", responses, labels) == want
        assert sum(want) == 40  # chosen and padded answers right, rejected wrong


def test_boxed():
    cases = {
        "\\boxed{\\frac{1}{2}}": True,
        "first \\boxed{} then \\boxed{7}": True,
        "\\boxed{}": False,
        "\\boxed{  }": False,
        "\\boxed{3": False,
        "no box 3": False,
    }
    assert {k: has_boxed(k) for k in cases} == cases
    assert score("boxed", list(cases)) == [float(v) for v in cases.values()]


def test_format_regex_matches_the_whole_response():
    rule = "format:<think>.*</think>\\s*<answer>.*</answer>"
    responses = [
        "<think>a\nb</think>\n<answer>4</answer>\n",
        "<answer>4</answer>",
        "<think>x</think><answer>4</answer> extra",
    ]
    assert score(rule, responses) == [1.0, 0.0, 0.0]
    assert build_rule(rule).name == "format"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "maths",
            "--reward.rules: unknown rule 'maths'; did you mean 'math'? (valid: math, exact, boxed, format:REGEX)",
        ),
        ("format", "--reward.rules format needs a pattern: format:REGEX"),
        (
            "format:(",
            "--reward.rules format:(: not a valid regular expression (missing ), unterminated subpattern at position 0)",
        ),
        ("exact:x", "--reward.rules exact:x: only the format rule takes an argument"),
    ],
)
def test_bad_rule_specs(spec, message):
    with pytest.raises(ConfigError) as e:
        build_rule(spec)
    assert str(e.value) == message
