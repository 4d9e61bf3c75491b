"""How a call on a role group is spread over its workers: which worker gets which arguments, and how the
results become the one result the controller expects from a local worker.

Each worker method declares its kind (workers/dispatch.py `@dispatch`); `scatter` maps the kind to the
split and gather below. A method without a declaration cannot be called on a group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alignkit.algos.metric import merge_all
from alignkit.config.sampling import SamplingParams
from alignkit.orchestration.ray import dispatch
from alignkit.workers.dispatch import Dispatch


@dataclass(frozen=True)
class Part:
    """One worker's share of a call: the host method to run and its arguments."""

    worker: int
    method: str
    args: tuple = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Scatter:
    """A call spread over a group: one part per busy worker, and how their results become one."""

    parts: list[Part]
    gather: Callable[[list[Any]], Any]  # results of `parts`, in order -> the call's result


def _call(worker: int, method: str, *args: Any, **kwargs: Any) -> Part:
    return Part(worker, "call", (method, *args), kwargs)


def _busy(parts: list[list[int]]) -> list[int]:
    return [w for w, p in enumerate(parts) if p]


def rows(method: str, k: int, sharded: bool, exp, *rest: Any) -> Scatter:
    """A forward pass over an Experience (logprobs, values): rows split by tokens -> `(n, L)`. The
    workers of a sharded role get as many rows as each other (padded): each forward is collective."""
    parts = dispatch.split_rows(exp, k, equal_counts=sharded)
    size = max(len(p) for p in parts) if sharded else None
    busy = list(range(k)) if sharded else _busy(parts)
    calls = [_call(w, method, dispatch.shard(exp, parts[w], size), *rest) for w in busy]
    shape = tuple(exp.input_ids.shape)
    return Scatter(calls, lambda rs: dispatch.gather_rows([parts[w] for w in busy], rs, shape))


def train(method: str, k: int, sharded: bool, exp, *rest: Any) -> Scatter:
    """One optimizer step (update) of a role whose k workers form one process group: every worker
    takes a token-balanced shard of as many rows as the others; the step's denominator is among the
    arguments (computed by the controller on the whole mini-batch), so the summed gradients are those of
    one worker on all of it. The workers' partial metrics combine by their reductions."""
    if k == 1:
        return Scatter([_call(0, method, exp, *rest)], lambda rs: rs[0])
    parts = dispatch.split_rows(exp, k, equal_counts=True)
    if not all(parts):
        raise ValueError(f"{method}: {exp.n} rows cannot keep {k} workers busy")  # validate_rl prevents it
    size = max(len(p) for p in parts)
    calls = [_call(w, method, dispatch.shard(exp, parts[w], size), *rest) for w in range(k)]
    return Scatter(calls, merge_all)


def prompts(method: str, k: int, sharded: bool, prompt_ids: list[list[int]], params: SamplingParams) -> Scatter:
    """Prompts split by their token count; generations renumbered and in prompt-major order. Worker
    w > 0 samples with seed + w so that workers do not share their random numbers."""
    parts = dispatch.balanced_split([len(p) for p in prompt_ids], k)
    busy = _busy(parts) or [0]
    calls = []
    for w in busy:
        p = params if w == 0 or params.seed is None else dataclasses.replace(params, seed=params.seed + w)
        calls.append(_call(w, method, [prompt_ids[i] for i in parts[w]], p))
    return Scatter(calls, lambda rs: dispatch.gather_generations([parts[w] for w in busy], rs))


def samples(method: str, k: int, sharded: bool, prompts: list[str], responses: list[str], labels: list[Any],
            sources: list[str] | None = None) -> Scatter:
    """Samples split by their text length (each with its data line, `sources`, for errors); scores back in
    the original order."""
    parts = dispatch.balanced_split([len(p) + len(r) for p, r in zip(prompts, responses, strict=True)], k)
    busy = _busy(parts) or [0]
    columns = (prompts, responses, labels, sources or [""] * len(prompts))
    calls = [_call(w, method, *([xs[i] for i in parts[w]] for xs in columns)) for w in busy]
    return Scatter(calls, lambda rs: dispatch.gather_rewards([parts[w] for w in busy], rs, len(prompts)))


def everyone(method: str, k: int, sharded: bool, *args: Any) -> Scatter:
    """The same call on every worker (collective for a sharded role); worker 0's result."""
    return Scatter([_call(w, method, *args) for w in range(k)], lambda rs: rs[0])


SCATTERS: dict[Dispatch, Callable[..., Scatter]] = {
    "rows": rows, "train": train, "prompts": prompts, "samples": samples, "all": everyone,
}


def scatter(how: Dispatch, method: str, k: int, sharded: bool, *args: Any) -> Scatter:
    """The call `method(*args)` of kind `how` spread over `k` workers (`sharded`: they form one process
    group, so every forward is collective)."""
    return SCATTERS[how](method, k, sharded, *args)
