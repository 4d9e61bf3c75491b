"""User reward functions loaded from a file: loading errors and output checks, with exact messages."""

from __future__ import annotations

import textwrap

import pytest
import torch

from alignkit.errors import ConfigError
from alignkit.rewards.base import RewardInput
from alignkit.rewards.function import function_reward, load_function
from alignkit.rewards.validate import RewardError

SOURCE = textwrap.dedent(
    """
    import math

    def contains_label(prompts, responses, labels):
        return [1.0 if lab is not None and lab in r else 0.0 for r, lab in zip(responses, labels)]

    def parts(prompts, responses, labels):
        return {"length": [len(r) / 10 for r in responses], "bonus": [1.0] * len(responses)}

    def too_short(prompts, responses, labels):
        return [0.0] * (len(responses) - 1)

    def too_long(prompts, responses, labels):
        return [0.0] * (len(responses) + 1)

    def nan_second(prompts, responses, labels):
        return [1.0, math.nan][: len(responses)]

    def none_first(prompts, responses, labels):
        return [None] + [0.0] * (len(responses) - 1)

    def text(prompts, responses, labels):
        return ["high"] * len(responses)

    def scalar(prompts, responses, labels):
        return 1.0

    def bad_part(prompts, responses, labels):
        return {"ok": [0.0] * len(responses), "broken": [math.inf] * len(responses)}

    NOT_A_FUNCTION = 3
    """
)

BATCH = RewardInput(["first prompt", "second prompt"], ["the answer is 4", "5"], ["4", None])


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "my_rewards.py"
    p.write_text(SOURCE)
    return str(p)


def call(spec: str, batch: RewardInput = BATCH):
    return function_reward(spec)(batch)


def error(spec: str, batch: RewardInput = BATCH) -> str:
    with pytest.raises((RewardError, ConfigError)) as e:
        call(spec, batch)
    return str(e.value)


def test_list_of_floats(path):
    fn = function_reward(f"{path}:contains_label")
    out = fn(BATCH)
    assert fn.name == "contains_label"
    assert out.scores.dtype == torch.float32
    assert out.scores.tolist() == [1.0, 0.0] and out.components == {}


def test_dict_of_parts_is_summed_and_named(path):
    out = call(f"{path}:parts")
    assert out.scores.tolist() == pytest.approx([2.5, 1.1])
    assert out.components["length"].tolist() == pytest.approx([1.5, 0.1])
    assert out.components["bonus"].tolist() == [1.0, 1.0]


def test_labels_default_to_none(path):
    assert call(f"{path}:contains_label", RewardInput(["p"], ["4"])).scores.tolist() == [0.0]


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.py"
    assert error(f"{missing}:f") == f"--reward.function: file not found: {missing}"


def test_missing_name(path):
    assert error(f"{path}:nope") == (
        f"--reward.function: {path} defines no 'nope' (callables in it: bad_part, contains_label, nan_second, "
        "none_first, parts, scalar, text, too_long, too_short)"
    )


def test_not_callable(path):
    assert (
        error(f"{path}:NOT_A_FUNCTION")
        == f"--reward.function: {path}:NOT_A_FUNCTION is a int, not a function"
    )


def test_spec_without_name(path):
    assert error(path) == f"--reward.function must be path/to/file.py:name, got '{path}'"


def test_import_error(tmp_path):
    p = tmp_path / "broken.py"
    p.write_text("import no_such_module_xyz\n")
    assert error(f"{p}:f") == (
        f"--reward.function: importing {p} failed: ModuleNotFoundError: No module named 'no_such_module_xyz'"
    )


def test_too_few_rewards(path):
    assert error(f"{path}:too_short") == (
        f"reward function {path}:too_short: returned 1 rewards for 2 samples; none for sample 1 (prompt 'second prompt')"
    )


def test_too_many_rewards(path):
    assert error(f"{path}:too_long") == f"reward function {path}:too_long: returned 3 rewards for 2 samples"


def test_nan(path):
    assert (
        error(f"{path}:nan_second")
        == f"reward function {path}:nan_second: reward for sample 1 (prompt 'second prompt') is nan"
    )


def test_none(path):
    assert (
        error(f"{path}:none_first")
        == f"reward function {path}:none_first: reward missing (None) for sample 0 (prompt 'first prompt')"
    )


def test_not_a_number(path):
    assert (
        error(f"{path}:text")
        == f"reward function {path}:text: reward for sample 0 (prompt 'first prompt') is str 'high', not a number"
    )


def test_not_a_list(path):
    assert (
        error(f"{path}:scalar") == f"reward function {path}:scalar: expected a list of 2 numbers, got float"
    )


def test_bad_part_is_named(path):
    assert (
        error(f"{path}:bad_part")
        == f"reward function {path}:bad_part, part 'broken': reward for sample 0 (prompt 'first prompt') is inf"
    )


def test_long_prompt_is_cut_at_40_chars(path):
    batch = RewardInput(["x" * 50, "y" * 41], ["a", "b"], [None, None])
    assert error(f"{path}:nan_second", batch).endswith(f"sample 1 (prompt '{'y' * 40}...') is nan")


def test_two_files_with_one_name_do_not_collide(tmp_path):
    for d, value in (("a", 1.0), ("b", 2.0)):
        (tmp_path / d).mkdir()
        (tmp_path / d / "rewards.py").write_text(
            f"def f(prompts, responses, labels):\n    return [{value}] * len(prompts)\n"
        )
    fa, fb = (load_function(str(tmp_path / d / "rewards.py") + ":f") for d in "ab")
    assert fa([""], [""], [None]) == [1.0] and fb([""], [""], [None]) == [2.0]
