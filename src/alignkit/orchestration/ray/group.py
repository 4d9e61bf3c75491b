"""A role as a group of Ray actors: a call splits its batch over the workers, runs them in parallel
and gathers the results in order (each worker method declares how: workers/dispatch.py, scatter.py).

`group.logprobs(exp)` looks like a local worker's call and blocks; `group.submit("generate", ...)`
returns at once with a `Pending` (async rollouts, independent calls of separate roles). Every wait is
bounded by the call timeout (an SPMD job's, `run_all`, by its collectives' timeout), and a failure names
the role, the worker and the method.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError

from alignkit.errors import AlignkitError
from alignkit.orchestration.ray.scatter import Part, scatter
from alignkit.workers.dispatch import dispatch_of

log = logging.getLogger("alignkit")


class WorkerDied(AlignkitError):
    """A worker process of a role is gone (crashed, killed, its node lost)."""


@dataclass
class Pending:
    """Calls in flight on the workers of one role; `result()` waits for them all."""

    role: str
    method: str
    refs: list[Any]  # ObjectRef per part
    workers: list[int]  # the worker of each ref
    gather: Callable[[list[Any]], Any]
    timeout_s: float | None  # None: no deadline (see RoleGroup.run_all)

    def result(self) -> Any:
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        left = dict(zip(self.refs, range(len(self.refs)), strict=True))
        out: list[Any] = [None] * len(self.refs)
        while left:
            # One at a time: a worker that fails is reported at once, not after the others time out
            # waiting for it in a collective.
            wait_s = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            ready, _ = ray.wait(list(left), num_returns=1, timeout=wait_s)
            if not ready:
                w = self.workers[min(left.values())]
                raise AlignkitError(f"{self.role} worker {w}: {self.method} did not finish within "
                                    f"{self.timeout_s:g}s (--ray.call_timeout_s)")
            i = left.pop(ready[0])
            out[i] = _get(ready[0], self.role, self.workers[i], self.method)
        return self.gather(out)


def _get(ref: Any, role: str, worker: int, method: str) -> Any:
    where = f"{role} worker {worker}"
    try:
        return ray.get(ref, timeout=0)
    except RayActorError as e:
        raise WorkerDied(f"{where} died during {method}: {_first_line(e)} (its log: "
                         "/tmp/ray/session_latest/logs on its node)") from None
    except RayTaskError as e:
        cause = e.cause
        if isinstance(cause, AlignkitError):
            raise type(cause)(f"{where} ({method}): {cause}") from None
        raise e.as_instanceof_cause() from None
    except GetTimeoutError:  # ray.wait said ready; cannot happen, but never wait unbounded
        raise AlignkitError(f"{where}: {method} result not available") from None
    except RayError as e:
        raise WorkerDied(f"{where} failed during {method}: {_first_line(e)}") from None


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


class RoleGroup:
    """The workers of one role; its methods are those of the role's worker class that declare a dispatch."""

    def __init__(self, role: str, cls: type, actors: list[Any], timeout_s: float, init: list[Any],
                 bundles: list[int], sharded: bool):
        """`init`: the workers' build calls in flight; `bundles`: the bundle of each worker;
        `sharded`: the workers form one process group."""
        self.role, self.cls, self.actors, self.timeout_s = role, cls, actors, timeout_s
        self.bundles, self.sharded = bundles, sharded
        self._init: list[Any] | None = init

    def __len__(self) -> int:
        return len(self.actors)

    def ready(self) -> None:
        """Wait until every worker is built (once)."""
        if self._init is None:
            return
        init, self._init = self._init, None
        self.wait(init, "init")
        nodes = self.on_all("node_id")
        log.info("%s: %d worker(s) on bundles %s, nodes %s", self.role, len(self.actors), self.bundles,
                 [n[:8] for n in nodes])

    def submit(self, method: str, *args: Any) -> Pending:
        """The worker method `method(*args)` spread over the workers as it declares, in flight."""
        how = dispatch_of(self.cls, method)
        if how is None:
            raise AttributeError(f"the {self.role} role ({self.cls.__name__}) has no remote method {method!r} "
                                 "(a worker method declares how it is split: workers/dispatch.py)")
        self.ready()
        s = scatter(how, method, len(self.actors), self.sharded, *args)
        refs = [getattr(self.actors[p.worker], p.method).remote(*p.args, **p.kwargs) for p in _shared(s.parts)]
        return Pending(self.role, method, refs, [p.worker for p in s.parts], s.gather, self.timeout_s)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_") or dispatch_of(self.cls, method) is None:
            raise AttributeError(f"the {self.role} role ({self.cls.__name__}) has no remote method {method!r}")
        return lambda *args: self.submit(method, *args).result()

    def wait(self, refs: list[Any], what: str) -> list[Any]:
        """The results of `refs` (one per worker, in order), bounded like any call."""
        return Pending(self.role, what, refs, list(range(len(refs))), list, self.timeout_s).result()

    def run_all(self, method: str) -> list[Any]:
        """The worker method `method` on every worker at once, waited for without a deadline: an SPMD job
        (a whole supervised run, orchestration/ray/spmd.py) runs as long as it trains. Its waits are
        bounded inside: every collective by the process group's timeout (--ray.call_timeout_s), after
        which the worker fails; a worker that fails or dies is reported at once, naming it."""
        self.ready()
        refs = [a.call.remote(method) for a in self.actors]
        return Pending(self.role, method, refs, list(range(len(refs))), list, None).result()

    def each(self, host_method: str, *args: Any) -> Pending:
        """A host method on every worker, in flight; its result is the list of the workers' results."""
        self.ready()
        refs = [getattr(a, host_method).remote(*args) for a in self.actors]
        return Pending(self.role, host_method, refs, list(range(len(refs))), list, self.timeout_s)

    def on_all(self, host_method: str, *args: Any) -> list[Any]:
        """A host method on every worker (set-up, inspection, weight sync)."""
        return self.each(host_method, *args).result()

    def apply(self, fn: Callable[[Any], Any]) -> list[Any]:
        """`fn(worker)` on every worker, for inspection and tests."""
        return self.on_all("apply", fn)


def _shared(parts: list[Part]) -> list[Part]:
    """An argument sent to several workers (the same batch, a checkpoint) goes into the object store
    once, not once per worker."""
    counts = Counter(id(a) for p in parts for a in (*p.args, *p.kwargs.values()))
    refs: dict[int, Any] = {}

    def swap(a: Any) -> Any:
        if counts[id(a)] < 2 or isinstance(a, str | int | float | bool | None):
            return a
        if id(a) not in refs:
            refs[id(a)] = ray.put(a)
        return refs[id(a)]

    return [Part(p.worker, p.method, tuple(swap(a) for a in p.args), {k: swap(v) for k, v in p.kwargs.items()})
            for p in parts]
