"""A user reward function runs bounded: under a deadline, and whatever goes wrong inside it (an
exception, `sys.exit`, a hang) becomes one RewardError naming the function and the sample.

The call runs on a daemon thread that the caller waits for at most `timeout_s`: a function that hangs is
abandoned (it cannot be killed, and it does not keep the process from exiting), and the error says where
it was. When a call raises, the samples are tried one at a time (each also bounded) to name the first
one that fails: a crash on one odd response is then found in the data, not only in the batch. Being on
another thread, the function must not rely on main-thread-only facilities such as `signal.alarm` (for
math-verify inside a reward function: `parse(..., parsing_timeout=None)`, `verify(..., timeout_seconds=
None)`); the deadline bounds it instead.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from alignkit.rewards.base import RewardInput
from alignkit.rewards.validate import RewardError, labels_of, sample_name


class CallTimedOut(Exception):
    """`call_bounded`: the call did not return in time (it goes on, abandoned, on its daemon thread)."""


class CallFailed(Exception):
    """`call_bounded`: the call raised `error`."""

    def __init__(self, error: BaseException):
        self.error = error


def call_bounded(fn: Callable[[], Any], timeout_s: float | None, name: str) -> Any:
    """`fn()` on a daemon thread; its result, `CallFailed` wrapping anything it raised (SystemExit
    included), or `CallTimedOut` after `timeout_s` (None: no deadline)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as e:  # sys.exit and KeyboardInterrupt too: they are the function's failure
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=target, daemon=True, name=f"reward {name}").start()
    if not done.wait(timeout_s):
        raise CallTimedOut
    if "error" in box:
        raise CallFailed(box["error"])
    return box["result"]


def _describe(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"called sys.exit({e.code!r})"
    frames = traceback.extract_tb(e.__traceback__)
    at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"raised {type(e).__name__}: {e}{at}"


def _one(batch: RewardInput, i: int) -> RewardInput:
    return RewardInput(batch.prompts[i : i + 1], batch.responses[i : i + 1], labels_of(batch)[i : i + 1],
                       batch.sources[i : i + 1])


def run_user_function(fn: Callable[..., Any], batch: RewardInput, timeout_s: float | None, source: str) -> Any:
    """`fn(prompts, responses, labels)` of a user reward function, bounded (see the module doc)."""
    labels = labels_of(batch)

    def call(b: RewardInput, lab: list[Any]) -> Callable[[], Any]:
        return lambda: fn(list(b.prompts), list(b.responses), lab)

    try:
        return call_bounded(call(batch, labels), timeout_s, source)
    except CallTimedOut:
        raise RewardError(f"{source} did not return within {timeout_s:g} s (--reward.timeout_s) scoring "
                          f"{len(labels)} samples, the first {sample_name(batch, 0)}") from None
    except CallFailed as failed:
        first = failed.error
    for i in range(len(labels)):  # which sample makes it fail?
        try:
            call_bounded(call(_one(batch, i), labels[i : i + 1]), timeout_s, source)
        except CallFailed as f:
            raise RewardError(f"{source} {_describe(f.error)}, scoring {sample_name(batch, i)}") from None
        except CallTimedOut:
            break
    raise RewardError(f"{source} {_describe(first)}, scoring {len(labels)} samples, the first "
                      f"{sample_name(batch, 0)}") from None
