"""A planning problem in array form: every call's candidate (mesh, strategy) pairs and their costs.

A plan is one candidate index per call. Costs depend on the mesh only through its size (meshes
are aligned, so two meshes of one size have the same links), so each (call, size, strategy) is
costed once and copied to every mesh of that size. Strategies of one layout (dp, tp, pp) on one
mesh that are beaten on every count (time, persistent memory, transient memory, ZeRO-3 or not)
by another are dropped: they can never be part of a better plan, so this is exact.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from alignkit.errors import ConfigError
from alignkit.planner.cost import USABLE_MEMORY, CallCost, call_cost
from alignkit.planner.efficiency import Efficiency
from alignkit.planner.graph import DataflowGraph
from alignkit.planner.hardware import ClusterSpec
from alignkit.planner.strategy import DeviceMesh, ParallelStrategy, enumerate_meshes, enumerate_strategies


@dataclass(frozen=True)
class Entry:
    """One candidate of a call before it is put into arrays."""

    mesh: int  # index into the problem's mesh list
    strategy: ParallelStrategy
    time_s: float
    persistent_bytes: float
    transient_bytes: float
    weight_copy_bytes: float


class CandidateTable:
    """A call's candidates as parallel numpy arrays, sorted by (mesh, strategy), plus the index
    structures the annealer's moves use."""

    def __init__(self, entries: list[Entry], meshes: list[DeviceMesh]):
        if not entries:
            raise ValueError("a call needs at least one candidate")
        entries = sorted(entries, key=lambda e: (e.mesh, e.strategy))
        self.strategies = [e.strategy for e in entries]
        self.n = len(entries)
        self.mesh = np.array([e.mesh for e in entries], dtype=np.int64)
        self.start = np.array([meshes[e.mesh].start for e in entries], dtype=np.int64)
        self.size = np.array([meshes[e.mesh].size for e in entries], dtype=np.int64)
        s = self.strategies
        self.dp = np.array([x.dp for x in s], dtype=np.int64)
        self.tp = np.array([x.tp for x in s], dtype=np.int64)
        self.pp = np.array([x.pp for x in s], dtype=np.int64)
        self.zero = np.array([x.zero for x in s], dtype=np.int64)
        self.time = np.array([e.time_s for e in entries])
        self.persistent = np.array([e.persistent_bytes for e in entries])
        self.transient = np.array([e.transient_bytes for e in entries])
        self.weight_copy = np.array([e.weight_copy_bytes for e in entries])
        # Candidates on one mesh are contiguous: group start / count per candidate and per mesh.
        n_meshes = len(meshes)
        self.n_meshes = n_meshes
        self.mesh_first = np.full(n_meshes, -1, dtype=np.int64)
        self.mesh_count = np.zeros(n_meshes, dtype=np.int64)
        for i, m in enumerate(self.mesh):
            if self.mesh_first[m] < 0:
                self.mesh_first[m] = i
            self.mesh_count[m] += 1
        self.group_first = self.mesh_first[self.mesh]
        self.group_count = self.mesh_count[self.mesh]
        # Same strategy on other meshes (of the same size): a permutation grouping them.
        keys = [(int(self.size[i]), s[i]) for i in range(self.n)]
        order = sorted(range(self.n), key=lambda i: (keys[i], int(self.mesh[i])))
        self.by_strategy = np.array(order, dtype=np.int64)
        self.pos_in_strategy = np.empty(self.n, dtype=np.int64)
        self.pos_in_strategy[self.by_strategy] = np.arange(self.n)
        first: dict = {}
        count: dict = defaultdict(int)
        for pos, i in enumerate(order):
            first.setdefault(keys[i], pos)
            count[keys[i]] += 1
        self.strat_first = np.array([first[keys[i]] for i in range(self.n)], dtype=np.int64)
        self.strat_count = np.array([count[keys[i]] for i in range(self.n)], dtype=np.int64)

    def index_layouts(self, layout_ids: dict[tuple[int, int, int], int]) -> None:
        """Group candidates by (mesh, layout): contiguous, since strategies sort by dp, tp, pp
        first. Used by the annealer's "run like that other call" move."""
        self.layout = np.array([layout_ids[s.layout] for s in self.strategies], dtype=np.int64)
        self.layout_first = np.full((self.n_meshes, len(layout_ids)), -1, dtype=np.int64)
        self.layout_count = np.zeros((self.n_meshes, len(layout_ids)), dtype=np.int64)
        for i in range(self.n):
            m, lay = self.mesh[i], self.layout[i]
            if self.layout_first[m, lay] < 0:
                self.layout_first[m, lay] = i
            self.layout_count[m, lay] += 1


class PlanningProblem:
    """The graph, the cluster and per-call candidate tables; what search and simulation share."""

    def __init__(
        self,
        graph: DataflowGraph,
        cluster: ClusterSpec,
        eff: Efficiency,
        meshes: list[DeviceMesh],
        tables: list[CandidateTable],
        usable_memory: float | None = None,
    ):
        self.graph = graph
        self.cluster = cluster
        self.eff = eff
        self.meshes = meshes
        self.tables = tables
        self.n_calls = len(graph.calls)
        self.n_devices = cluster.n_devices
        self.usable_memory = (
            cluster.device.memory_bytes * USABLE_MEMORY if usable_memory is None else usable_memory
        )
        self.mesh_mask = np.zeros((len(meshes), self.n_devices), dtype=bool)
        for i, m in enumerate(meshes):
            self.mesh_mask[i, m.start : m.stop] = True
        self.mesh_index = {m: i for i, m in enumerate(meshes)}
        self.full_mesh = self.mesh_index.get(DeviceMesh(0, self.n_devices), -1)
        calls = graph.calls
        self.deps = [[graph.index(d) for d in c.deps] for c in calls]
        self.home = [graph.home_call(c.model) for c in calls]
        # Weight moves: every call that does not hold its model's state gets one from the home.
        self.moves = [c for c in range(self.n_calls) if self.home[c] != c]
        self.homes = sorted(set(self.home))
        self.same_model = [
            [o for o in range(self.n_calls) if o != c and calls[o].model == calls[c].model]
            for c in range(self.n_calls)
        ]
        self.weight_bytes = [2.0 * graph.models[c.model].n_params for c in calls]
        layouts = sorted({s.layout for t in tables for s in t.strategies})
        self.layouts = layouts
        layout_ids = {lay: i for i, lay in enumerate(layouts)}
        for t in tables:
            t.index_layouts(layout_ids)

    @property
    def space_size(self) -> float:
        return float(np.prod([float(t.n) for t in self.tables]))

    def mesh_of(self, call: int, cand: int) -> DeviceMesh:
        return self.meshes[int(self.tables[call].mesh[cand])]

    def strategy_of(self, call: int, cand: int) -> ParallelStrategy:
        return self.tables[call].strategies[cand]


def build_problem(
    graph: DataflowGraph,
    cluster: ClusterSpec,
    eff: Efficiency | None = None,
    meshes: list[DeviceMesh] | None = None,
) -> PlanningProblem:
    """Cost every call on every mesh with every strategy, drop the infeasible and the dominated.
    Raises ConfigError naming the call when one cannot run anywhere, with the closest miss."""
    eff = eff or Efficiency()
    meshes = enumerate_meshes(cluster) if meshes is None else meshes
    by_size: dict[int, list[int]] = defaultdict(list)
    for i, m in enumerate(meshes):
        by_size[m.size].append(i)
    tables = []
    for ci, call in enumerate(graph.calls):
        model = graph.models[call.model]
        is_home = graph.home_call(call.model) == ci
        entries: list[Entry] = []
        closest: tuple[float, str] | None = None
        for size, mesh_ids in sorted(by_size.items()):
            kept, miss = _costed_strategies(call.kind, model, graph, size, cluster, eff, is_home)
            if miss is not None and (closest is None or miss[0] < closest[0]):
                closest = miss
            for strategy, cost in kept:
                entries += [
                    Entry(
                        m,
                        strategy,
                        cost.time_s,
                        cost.persistent_bytes,
                        cost.transient_bytes,
                        cost.weight_copy_bytes,
                    )
                    for m in mesh_ids
                ]
        if not entries:
            why = f": the leanest option {closest[1]}" if closest else ""
            raise ConfigError(
                f"no feasible way to run {call.name} ({model.name}) on {cluster.describe()}{why}. "
                "Use more devices, devices with more memory, a smaller batch or shorter sequences"
            )
        tables.append(CandidateTable(entries, meshes))
    return PlanningProblem(graph, cluster, eff, meshes, tables)


def _costed_strategies(kind, model, graph, size, cluster, eff, is_home):
    """Feasible, non-dominated (strategy, cost) pairs for one mesh size, and the closest miss
    (memory need, reason) among the infeasible ones."""
    groups: dict[tuple[int, int, int], list[tuple[ParallelStrategy, CallCost]]] = defaultdict(list)
    closest = None
    for s in enumerate_strategies(kind, size, model, graph.workload, cluster):
        cost = call_cost(kind, model, graph.workload, s, cluster, eff)
        if cost.feasible:
            groups[s.layout].append((s, cost))
        else:
            need = sum(v for _, v in cost.memory_parts)
            if closest is None or need < closest[0]:
                closest = (need, f"{s.label()} on {size} device(s): {cost.infeasible}")
    kept = []
    for items in groups.values():
        kept += _pareto(items, is_home)
    return kept, closest


def _pareto(items, is_home: bool):
    """Keep the strategies no other beats on every objective (ties keep the first)."""

    def key(item):
        s, c = item
        if is_home:
            return (c.time_s, c.persistent_bytes, c.transient_bytes, int(s.zero == 3))
        return (c.time_s, c.transient_bytes)

    keys = [key(it) for it in items]
    out = []
    for i, ki in enumerate(keys):
        dominated = False
        for j, kj in enumerate(keys):
            if i != j and all(a <= b for a, b in zip(kj, ki, strict=True)) and (kj != ki or j < i):
                dominated = True
                break
        if not dominated:
            out.append(items[i])
    return out
