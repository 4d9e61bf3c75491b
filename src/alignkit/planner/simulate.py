"""Schedule a plan over the dataflow graph: makespan, critical path, memory check.

Rules (the same in the fast batched evaluator and in the detailed one used for reports):

* At the start of an iteration (the previous train calls are done) every call that does not run
  in its model's home layout gets a *weight move* from the home layout (ReaLHF's parameter
  reallocation: policy training layout -> generation layout). A move occupies the devices of both
  layouts; moves are scheduled first, in call order.
* Calls are then scheduled in graph order (a fixed priority list): each starts when its
  dependencies and its move have finished and every device of its mesh is free. Calls on
  overlapping meshes therefore serialise; calls on disjoint meshes overlap.
* Memory, per device: the persistent state of every model homed there (weights, gradients,
  optimizer states of its home call), plus the largest transient need of the calls that run
  there (activations, logits, KV cache, and the weight copy of a call laid out unlike its home).
  A plan is infeasible if any device exceeds the usable memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alignkit.planner.cost import move_time
from alignkit.planner.hardware import GIB
from alignkit.planner.problem import PlanningProblem
from alignkit.planner.strategy import DeviceMesh


def _move_times(problem: PlanningProblem, X: np.ndarray, c: int):
    h = problem.home[c]
    src, dst = problem.tables[h], problem.tables[c]
    i, j = X[:, h], X[:, c]
    t = move_time(
        problem.weight_bytes[c],
        src.start[i], src.size[i], src.dp[i], src.tp[i], src.pp[i], src.zero[i],
        dst.start[j], dst.size[j], dst.dp[j], dst.tp[j], dst.pp[j],
        problem.cluster, problem.eff,
    )  # fmt: skip
    same = (
        (src.mesh[i] == dst.mesh[j]) & (src.dp[i] == dst.dp[j]) & (src.tp[i] == dst.tp[j])
        & (src.pp[i] == dst.pp[j])
    )  # fmt: skip
    copy = ~same | (src.zero[i] == 3)
    return np.asarray(t, dtype=float), copy


def evaluate_batch(problem: PlanningProblem, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Makespans and memory overflows (bytes over usable on the worst device; 0 when feasible)
    of K plans at once. ``X`` is (K, n_calls) candidate indices."""
    X = np.asarray(X, dtype=np.int64)
    K = X.shape[0]
    T = problem.tables
    mask = problem.mesh_mask
    free = np.zeros((K, problem.n_devices))
    transient = np.zeros((K, problem.n_devices))
    move_end = np.zeros((K, problem.n_calls))
    copies = {}
    for c in problem.moves:
        t, copies[c] = _move_times(problem, X, c)
        m = mask[T[problem.home[c]].mesh[X[:, problem.home[c]]]] | mask[T[c].mesh[X[:, c]]]
        busy = m & (t > 0)[:, None]
        start = np.where(m, free, 0.0).max(axis=1)
        end = start + t
        free = np.where(busy, end[:, None], free)
        move_end[:, c] = np.where(t > 0, end, 0.0)
    ends = np.zeros((K, problem.n_calls))
    for c in range(problem.n_calls):
        tab, j = T[c], X[:, c]
        m = mask[tab.mesh[j]]
        ready = move_end[:, c]
        for d in problem.deps[c]:
            ready = np.maximum(ready, ends[:, d])
        start = np.maximum(ready, np.where(m, free, 0.0).max(axis=1))
        ends[:, c] = start + tab.time[j]
        free = np.where(m, ends[:, c][:, None], free)
        need = tab.transient[j]
        if c in copies:
            need = need + np.where(copies[c], tab.weight_copy[j], 0.0)
        transient = np.maximum(transient, np.where(m, need[:, None], 0.0))
    persistent = np.zeros((K, problem.n_devices))
    for h in problem.homes:
        tab, j = T[h], X[:, h]
        persistent += np.where(mask[tab.mesh[j]], tab.persistent[j][:, None], 0.0)
    overflow = np.maximum((persistent + transient).max(axis=1) - problem.usable_memory, 0.0)
    return ends.max(axis=1), overflow


@dataclass(frozen=True)
class Event:
    """One scheduled node: a call or a weight move."""

    name: str
    kind: str  # "call" or "move"
    meshes: tuple[DeviceMesh, ...]
    start: float
    end: float
    after: str | None  # the node whose end decided this start (None: started at time 0)


@dataclass(frozen=True)
class Schedule:
    makespan: float
    events: tuple[Event, ...]
    critical_path: tuple[str, ...]
    peak_memory: tuple[float, ...]  # bytes per device
    call_memory: tuple[float, ...]  # bytes per device each call needs for itself (state if home)
    feasible: bool
    reason: str | None  # why it is infeasible: the worst device and what fills it


def simulate(problem: PlanningProblem, choice) -> Schedule:
    """The detailed schedule of one plan (what the report prints)."""
    choice = [int(x) for x in choice]
    n = problem.n_devices
    free = [0.0] * n
    last: list[str | None] = [None] * n  # node that last used each device
    events: dict[str, Event] = {}
    X = np.array([choice])
    calls = problem.graph.calls

    def place(name, kind, meshes, ready, ready_from, duration):
        start, after = ready, ready_from
        for m in meshes:
            for d in m.devices:
                if free[d] > start:
                    start, after = free[d], last[d]
        ev = Event(name, kind, tuple(meshes), start, start + duration, after if start > 0 else None)
        events[name] = ev
        if duration > 0 or kind == "call":
            for m in meshes:
                for d in m.devices:
                    free[d], last[d] = ev.end, name
        return ev

    move_of: dict[int, Event] = {}
    copies: dict[int, bool] = {}
    for c in problem.moves:
        t, copy = _move_times(problem, X, c)
        copies[c] = bool(copy[0])
        h = problem.home[c]
        src, dst = problem.mesh_of(h, choice[h]), problem.mesh_of(c, choice[c])
        if t[0] > 0:
            meshes = (src,) if src == dst else (src, dst)
            move_of[c] = place(
                f"move {calls[h].model}->{calls[c].name}", "move", meshes, 0.0, None, float(t[0])
            )
    for c, call in enumerate(calls):
        ready, ready_from = 0.0, None
        preds = [events[calls[d].name] for d in problem.deps[c]]
        if c in move_of:
            preds.append(move_of[c])
        for p in preds:
            if p.end > ready:
                ready, ready_from = p.end, p.name
        dur = float(problem.tables[c].time[choice[c]])
        place(call.name, "call", (problem.mesh_of(c, choice[c]),), ready, ready_from, dur)

    # Critical path: walk back from the last node to finish through the node that held each up.
    order = list(events.values())
    node = max(order, key=lambda e: (e.end, e.kind == "call"))
    path = [node.name]
    while node.after is not None:
        node = events[node.after]
        path.append(node.name)
    makespan = max(e.end for e in order)

    peak, reason = _memory(problem, choice, copies)
    own = []
    for c in range(problem.n_calls):
        tab, j = problem.tables[c], choice[c]
        b = float(tab.transient[j])
        if problem.home[c] == c:
            b += float(tab.persistent[j])
        elif copies.get(c):
            b += float(tab.weight_copy[j])
        own.append(b)
    return Schedule(
        makespan=makespan,
        events=tuple(sorted(order, key=lambda e: (e.start, e.end))),
        critical_path=tuple(reversed(path)),
        peak_memory=tuple(peak),
        call_memory=tuple(own),
        feasible=reason is None,
        reason=reason,
    )


def _memory(problem: PlanningProblem, choice: list[int], copies: dict[int, bool]):
    n = problem.n_devices
    calls = problem.graph.calls
    persistent = [[] for _ in range(n)]  # (label, bytes)
    transient = [(0.0, "") for _ in range(n)]
    for h in problem.homes:
        mesh, b = problem.mesh_of(h, choice[h]), float(problem.tables[h].persistent[choice[h]])
        for d in mesh.devices:
            persistent[d].append((f"{calls[h].model} state", b))
    for c, call in enumerate(calls):
        tab, j = problem.tables[c], choice[c]
        need = float(tab.transient[j]) + (float(tab.weight_copy[j]) if copies.get(c) else 0.0)
        for d in problem.mesh_of(c, j).devices:
            if need > transient[d][0]:
                transient[d] = (need, call.name)
    peak = [sum(b for _, b in persistent[d]) + transient[d][0] for d in range(n)]
    worst = int(np.argmax(peak))
    if peak[worst] <= problem.usable_memory:
        return peak, None
    parts = " + ".join(f"{label} {b / GIB:.1f}" for label, b in persistent[worst])
    t, who = transient[worst]
    reason = (
        f"device {worst} needs {peak[worst] / GIB:.1f} GiB > {problem.usable_memory / GIB:.1f} GiB usable: "
        f"{parts} + largest working set {t / GIB:.1f} ({who})"
    )
    return peak, reason
