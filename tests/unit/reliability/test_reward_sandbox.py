"""A user reward function that hangs, raises or calls sys.exit becomes one error naming the function and
the sample's data line; it runs under --reward.timeout_s."""

import textwrap
import time

import pytest

from alignkit.rewards.base import RewardInput
from alignkit.rewards.function import function_reward
from alignkit.rewards.validate import RewardError

SOURCE = textwrap.dedent(
    """
    import sys
    import time

    def hangs(prompts, responses, labels):
        time.sleep(3600)

    def raises_on_odd(prompts, responses, labels):
        return [1.0 / (len(r) % 2 == 0) for r in responses]

    def exits(prompts, responses, labels):
        sys.exit(3)

    def slow(prompts, responses, labels):
        time.sleep(0.2)
        return [1.0] * len(responses)
    """
)

BATCH = RewardInput(["p0", "p1", "p2"], ["ab", "abc", "abcd"], [None] * 3,
                    ["data/prompts.jsonl:1", "data/prompts.jsonl:7", "data/prompts.jsonl:9"])


@pytest.fixture
def spec(tmp_path):
    p = tmp_path / "rw.py"
    p.write_text(SOURCE)
    return lambda name: f"{p}:{name}"


def error(spec: str, timeout_s: float = 5.0) -> str:
    with pytest.raises(RewardError) as e:
        function_reward(spec, timeout_s)(BATCH)
    return str(e.value)


def test_a_hang_is_bounded(spec):
    t0 = time.monotonic()
    message = error(spec("hangs"), timeout_s=0.3)
    assert time.monotonic() - t0 < 3
    assert message == (f"reward function {spec('hangs')} did not return within 0.3 s (--reward.timeout_s) scoring 3 "
                       "samples, the first sample 0 (data/prompts.jsonl:1, prompt 'p0')")


def test_an_exception_names_the_sample_and_the_code_line(spec):
    assert error(spec("raises_on_odd")) == (
        f"reward function {spec('raises_on_odd')} raised ZeroDivisionError: float division by zero at "
        f"{spec('raises_on_odd').rpartition(':')[0]}:9, scoring sample 1 (data/prompts.jsonl:7, prompt 'p1')")


def test_sys_exit_is_an_error_not_the_end_of_the_run(spec):
    assert error(spec("exits")) == (f"reward function {spec('exits')} called sys.exit(3), scoring sample 0 "
                                    "(data/prompts.jsonl:1, prompt 'p0')")


def test_a_function_within_its_deadline_scores(spec):
    assert function_reward(spec("slow"), 5.0)(BATCH).scores.tolist() == [1.0, 1.0, 1.0]
