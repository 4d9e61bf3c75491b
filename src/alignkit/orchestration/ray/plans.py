"""How each role method is spread over a group's workers: which worker gets which arguments, and how
the results become the one result the controller expects from a local worker.

A method the table does not name cannot be called on a group: the table is the contract between the
controller's calls (trainers/online_rl.py) and the Ray executor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alignkit.orchestration.ray import dispatch
from alignkit.orchestration.ray.sync import BUCKET_BYTES
from alignkit.rollout.base import SamplingParams


@dataclass(frozen=True)
class Part:
    """One worker's share of a call: the host method to run and its arguments."""

    worker: int
    method: str
    args: tuple = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    parts: list[Part]
    gather: Callable[[list[Any]], Any]  # results of `parts`, in order -> the call's result


def _call(worker: int, method: str, *args: Any, **kwargs: Any) -> Part:
    return Part(worker, "call", (method, *args), kwargs)


def _busy(parts: list[list[int]]) -> list[int]:
    return [w for w, p in enumerate(parts) if p]


def rows(sharded: bool) -> Callable[..., Plan]:
    """A forward pass over an Experience (logprobs, values): rows split by tokens -> `(n, L)`. The
    workers of a sharded role get as many rows as each other (padded): each forward is collective."""

    def plan(method: str, k: int, exp, *rest: Any) -> Plan:
        parts = dispatch.split_rows(exp, k, equal_counts=sharded)
        size = max(len(p) for p in parts) if sharded else None
        busy = list(range(k)) if sharded else _busy(parts)
        calls = [_call(w, method, dispatch.shard(exp, parts[w], size), *rest) for w in busy]
        shape = tuple(exp.input_ids.shape)
        return Plan(calls, lambda rs: dispatch.gather_rows([parts[w] for w in busy], rs, shape))

    return plan


def train(method: str, k: int, exp, *rest: Any) -> Plan:
    """One optimizer step (update) of a role whose k workers form one process group: every worker
    takes a token-balanced shard of as many rows as the others and divides by the WHOLE mini-batch's
    counts, so the summed gradients and metrics are those of one worker on all of it."""
    if k == 1:
        return Plan([_call(0, method, exp, *rest)], lambda rs: rs[0])
    parts = dispatch.split_rows(exp, k, equal_counts=True)
    if not all(parts):
        raise ValueError(f"{method}: {exp.n} rows cannot keep {k} workers busy")  # validate_rl prevents it
    size, totals = max(len(p) for p in parts), exp.totals()
    calls = [_call(w, method, dispatch.shard(exp, parts[w], size), *rest, totals=totals) for w in range(k)]
    return Plan(calls, dispatch.sum_metrics)


def generate(method: str, k: int, prompts: list[list[int]], params: SamplingParams) -> Plan:
    """Prompts split by their token count; generations renumbered and in prompt-major order. Worker
    w > 0 samples with seed + w so that workers do not share their random numbers."""
    parts = dispatch.balanced_split([len(p) for p in prompts], k)
    busy = _busy(parts) or [0]
    calls = []
    for w in busy:
        p = params if w == 0 or params.seed is None else dataclasses.replace(params, seed=params.seed + w)
        calls.append(_call(w, method, [prompts[i] for i in parts[w]], p))
    return Plan(calls, lambda rs: dispatch.gather_generations([parts[w] for w in busy], rs))


def score(method: str, k: int, prompts: list[str], responses: list[str], labels: list[Any],
          sources: list[str] | None = None) -> Plan:
    """Samples split by their text length (each with its data line, `sources`, for errors); scores back in
    the original order."""
    parts = dispatch.balanced_split([len(p) + len(r) for p, r in zip(prompts, responses, strict=True)], k)
    busy = _busy(parts) or [0]
    columns = (prompts, responses, labels, sources or [""] * len(prompts))
    calls = [_call(w, method, *([xs[i] for i in parts[w]] for xs in columns)) for w in busy]
    return Plan(calls, lambda rs: dispatch.gather_rewards([parts[w] for w in busy], rs, len(prompts)))


def weights(method: str, k: int) -> Plan:
    """Full weights into the object store: every worker takes part (gathering shards is collective),
    worker 0 publishes; the result is a `WeightRefs`."""
    calls = [Part(w, "publish_weights", (w == 0, BUCKET_BYTES)) for w in range(k)]
    return Plan(calls, lambda rs: rs[0])


def load_weights(timeout_s: float) -> Callable[..., Plan]:
    def plan(method: str, k: int, refs) -> Plan:
        return Plan([Part(w, "load_weights", (refs, timeout_s)) for w in range(k)], lambda rs: None)

    return plan


def everyone(method: str, k: int, *args: Any) -> Plan:
    """The same call on every worker (collective for a sharded role); worker 0's result."""
    return Plan([_call(w, method, *args) for w in range(k)], lambda rs: rs[0])


def method_plans(timeout_s: float, sharded: bool) -> dict[str, Callable[..., Plan]]:
    """`sharded`: the role's workers form one process group (every call is collective)."""
    return {
        "generate": generate,
        "score": score,
        "logprobs": rows(sharded),
        "values": rows(sharded),
        "update": train,
        "weights": weights,
        "load_weights": load_weights(timeout_s),
        "sleep": everyone,
        "wake_up": everyone,
        "checkpoint_state": everyone,
        "load_checkpoint_state": everyone,
        "export": everyone,
    }
