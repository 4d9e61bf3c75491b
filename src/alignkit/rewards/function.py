"""A reward function written by the user in a Python file: `--reward.function path/to/file.py:name`.

The function receives the whole batch and returns one reward per sample::

    def my_reward(prompts: list[str], responses: list[str], labels: list) -> list[float]:
        return [1.0 if label is not None and label in response else 0.0
                for response, label in zip(responses, labels)]

- `prompts[i]`, `responses[i]`: the text of sample i (the prompt as the data gave it, the response
  as generated, without the prompt).
- `labels[i]`: the sample's reference answer from the data, or None when the data has none.
- Return a list (or tuple, 1-D tensor or array) of `len(prompts)` finite numbers. To log parts of
  the reward separately, return a dict of name -> such a list instead: the reward is the sum of the
  parts, and each is logged as `reward/<function name>/<part>`.

The file is imported once, as a module of its own (it may import anything installed, and keep state
such as a loaded model in module globals). Each call runs on a worker thread under `--reward.timeout_s`
(rewards/sandbox.py): a call that hangs, raises or calls `sys.exit`, or returns a missing, None, NaN or
infinite reward or a list of the wrong length, stops the run with one error that names the function and
the sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alignkit.rewards.base import RewardInput, RewardOutput
from alignkit.rewards.sandbox import run_user_function
from alignkit.rewards.validate import RewardError, check_scores
from alignkit.user_code import load_object


def load_function(spec: str) -> Callable[..., Any]:
    """`path/to/file.py:name` -> the callable `name` defined in that file."""
    return load_object(spec, "--reward.function")


def to_output(result: Any, batch: RewardInput, source: str) -> RewardOutput:
    """A list of rewards, or a dict of part name -> list (summed into the reward), -> RewardOutput."""
    if not isinstance(result, dict):
        return RewardOutput(check_scores(result, batch, source))
    if not result:
        raise RewardError(f"{source}: returned an empty dict; give at least one part")
    parts = {str(k): check_scores(v, batch, f"{source}, part '{k}'") for k, v in result.items()}
    return RewardOutput(sum(parts.values()), parts)


@dataclass(frozen=True)
class FunctionReward:
    """The `RewardFn` of a user function; `name` (the function's) names its source and components."""

    spec: str
    name: str
    fn: Callable[..., Any]
    timeout_s: float | None = 30.0

    def __call__(self, batch: RewardInput) -> RewardOutput:
        source = f"reward function {self.spec}"
        return to_output(run_user_function(self.fn, batch, self.timeout_s, source), batch, source)


def function_reward(spec: str, timeout_s: float | None = 30.0) -> FunctionReward:
    """The user function `spec`, each call bounded by `timeout_s` seconds (rewards/sandbox.py)."""
    return FunctionReward(spec, spec.rpartition(":")[2], load_function(spec), timeout_s)
