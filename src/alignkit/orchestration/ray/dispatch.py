"""Splitting a call's batch over the workers of a role and putting the results back in order.

Pure (torch only, no Ray), so the rules are tested without a cluster. Work is balanced by TOKENS,
not samples: a forward pass costs what its sequences are long, and one worker holding the long
responses would make the others wait. A part keeps its rows in their original order, so one worker
gets the batch unchanged and the results are those of the local executor.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Sequence

import torch

from alignkit.rewards.base import RewardOutput
from alignkit.rollout.base import Generation
from alignkit.workers.experience import Experience


def balanced_split(costs: Sequence[int], k: int, equal_counts: bool = False) -> list[list[int]]:
    """Indices `0..len(costs)-1` in `k` parts of nearly equal total cost, each in ascending order.

    Longest-processing-time greedy: the costliest item goes to the part with the least so far (ties
    to the lower part), which is within 4/3 of the best split. `equal_counts`: the parts also hold
    the same number of items, give or take one (a sharded role's workers must run as many forward
    passes as each other). With fewer items than parts, the last parts are empty; with `k == 1` the
    single part is every index in order.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    n = len(costs)
    room = [n // k + (p < n % k) if equal_counts else n for p in range(k)]
    parts: list[list[int]] = [[] for _ in range(k)]
    heap = [(0, p) for p in range(k)]
    for i in sorted(range(n), key=lambda i: (-costs[i], i)):
        load, p = heapq.heappop(heap)
        while len(parts[p]) == room[p]:  # a full part leaves the heap for good
            load, p = heapq.heappop(heap)
        parts[p].append(i)
        heapq.heappush(heap, (load + costs[i], p))
    return [sorted(p) for p in parts]


def split_rows(exp: Experience, k: int, equal_counts: bool = False) -> list[list[int]]:
    """Row indices of `exp` per worker, balanced by sequence length (prompt + response tokens)."""
    return balanced_split(exp.lengths.tolist(), k, equal_counts)


def shard(exp: Experience, part: list[int], rows: int | None = None) -> Experience:
    """The rows `part` of `exp` (the batch itself when the part is all of it: one worker), padded to
    `rows` rows with empty ones: one token, nothing masked, so they add nothing to a loss or a metric,
    and every worker of a sharded role runs as many micro-batches as the others."""
    if part == list(range(exp.n)) and rows in (None, exp.n):
        return exp
    out = exp.select(torch.tensor(part, dtype=torch.long))
    extra = (rows or out.n) - out.n
    if extra <= 0:
        return out
    padded = {}
    for f in dataclasses.fields(out):
        v = getattr(out, f.name)
        if isinstance(v, torch.Tensor):
            v = torch.cat([v, torch.zeros((extra, *v.shape[1:]), dtype=v.dtype)])
        padded[f.name] = v
    padded["lengths"][out.n :] = 1
    return Experience(**padded)


def gather_rows(parts: list[list[int]], results: list[torch.Tensor], shape: tuple[int, int]) -> torch.Tensor:
    """Per-worker `(len(part), width)` results -> one `(n, L)` tensor in the original row order (a
    shard is trimmed to its longest row, so its results are padded back with zeros)."""
    if len(results) == 1 and tuple(results[0].shape) == shape:
        return results[0]
    out = torch.zeros(shape, dtype=results[0].dtype)
    for part, r in zip(parts, results, strict=True):
        out[torch.tensor(part, dtype=torch.long), : r.shape[1]] = r[: len(part)]  # padding rows dropped
    return out


def gather_vector(parts: list[list[int]], results: list[torch.Tensor], n: int) -> torch.Tensor:
    """Per-worker `(len(part),)` results -> `(n,)` in the original order."""
    if len(results) == 1:
        return results[0]
    out = torch.empty(n, dtype=results[0].dtype)
    for part, r in zip(parts, results, strict=True):
        out[torch.tensor(part, dtype=torch.long)] = r
    return out


def gather_generations(parts: list[list[int]], results: list[list[Generation]]) -> list[Generation]:
    """Each worker generated for its prompts (its own prompt indices 0, 1, ...): renumber the prompts
    globally and restore the prompt-major order of one engine (prompt 0's samples first)."""
    by_prompt: dict[int, list[Generation]] = {}
    for part, gens in zip(parts, results, strict=True):
        for g in gens:
            p = part[g.prompt_index]
            by_prompt.setdefault(p, []).append(dataclasses.replace(g, prompt_index=p))
    return [g for p in sorted(by_prompt) for g in by_prompt[p]]


def gather_rewards(parts: list[list[int]], results: list[RewardOutput], n: int) -> RewardOutput:
    scores = gather_vector(parts, [r.scores for r in results], n)
    names = results[0].components
    return RewardOutput(scores, {k: gather_vector(parts, [r.components[k] for r in results], n) for k in names})
