"""Running environment, tool and agent code with a time limit, sync or async, off the caller's thread.

Every call runs on a daemon thread of its own, so a call that hangs past its limit is abandoned: it
stalls no other call and never keeps the process from exiting (a thread cannot be killed, so a hung
synchronous call keeps its thread until it returns). A call that returns an awaitable (an `async def`
method) is awaited on one event loop shared by the whole process, so an async environment may keep
loop-bound resources (an HTTP session) from `reset` to `step`; at the limit its coroutine is cancelled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def shared_loop() -> asyncio.AbstractEventLoop:
    """The process-wide event loop that async environments, tools and agents run on (started once)."""
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="alignkit-envs-loop", daemon=True).start()
            _loop = loop
    return _loop


class CallTimeout(TimeoutError):
    """A call ran past its time limit."""


async def _wait_for(awaitable: Any) -> Any:
    return await awaitable


def resolve(value: Any, timeout: float | None = None) -> Any:
    """`value` itself, or, if it is awaitable, its result awaited on the shared loop (cancelled, and
    CallTimeout raised, after `timeout` seconds). Blocks the calling thread, which must not be the loop's."""
    if not inspect.isawaitable(value):
        return value
    future = asyncio.run_coroutine_threadsafe(_wait_for(value), shared_loop())
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise CallTimeout(f"timed out after {timeout:g} s") from None


def describe(e: BaseException) -> str:
    """`ValueError: bad move (env.py:12)`: the exception and the line of user code that raised it."""
    frames = traceback.extract_tb(e.__traceback__)
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {e}{where}"


@dataclass(frozen=True)
class Outcome:
    """How one call ended: its value, or `error` (the exception, or that it timed out)."""

    value: Any
    error: str  # "" when the call returned
    exception: BaseException | None
    seconds: float  # wall time of the call (the limit, when it timed out)

    @property
    def ok(self) -> bool:
        return not self.error


def _run(future: concurrent.futures.Future, fn: Callable[[], Any], timeout: float) -> None:
    start = time.monotonic()
    try:
        value = resolve(fn(), timeout)
    except BaseException as e:  # whatever user code raises is reported, never lost
        error = str(e) if isinstance(e, CallTimeout) else describe(e)
        future.set_result(Outcome(None, error, e, time.monotonic() - start))
        return
    future.set_result(Outcome(value, "", None, time.monotonic() - start))


def call_all(calls: list[Callable[[], Any]], timeout: float) -> list[Outcome]:
    """Start every call at once, each on its own thread; wait at most `timeout` seconds for them all.

    Returns one Outcome per call, in order; a call still running at the limit is abandoned and
    reported as `timed out after {timeout} s`.
    """
    futures: list[concurrent.futures.Future] = []
    for fn in calls:
        future: concurrent.futures.Future = concurrent.futures.Future()
        threading.Thread(target=_run, args=(future, fn, timeout), name="alignkit-envs-call", daemon=True).start()
        futures.append(future)
    concurrent.futures.wait(futures, timeout=timeout)
    return [
        f.result() if f.done() else Outcome(None, f"timed out after {timeout:g} s", CallTimeout(), timeout)
        for f in futures
    ]
