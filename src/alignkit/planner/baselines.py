"""The heuristic plans the planner is compared against.

Each baseline fixes the placement by a rule that practitioners use, then picks its strategies as
well as it can (so speed-ups over them are not inflated by a badly tuned baseline):

* ``colocated``: every call on all devices, one parallel layout (dp, tp, pp) for all of them, as
  in DeepSpeed-Chat or NeMo-Aligner style setups (ReaLHF's "heuristic plan"). The best layout is
  taken; ZeRO stage and micro-batches are tuned per call.
* ``separate``: each model (policy with its generation, critic, reference, reward) on its own
  contiguous block of devices, as in OpenRLHF's model-per-group placement. The best split is
  taken, each call with its best strategy on its block.
* ``split-generation``: generation on its own devices, every other call colocated on the rest
  with one layout (a hybrid like a separate vLLM pool next to colocated training).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alignkit.planner.problem import PlanningProblem
from alignkit.planner.search import DESCENT_PENALTY, SearchResult, coordinate_descent, energy
from alignkit.planner.simulate import evaluate_batch

EXACT_LIMIT = 20_000  # restricted spaces up to this size are scored exhaustively
SHORTLIST = 6  # placements (ranked by a lower bound) that get a full strategy search


@dataclass(frozen=True)
class BaselineResult:
    name: str
    description: str  # the placement and layout, for the report
    result: SearchResult | None  # None when the rule does not apply (too few devices)
    note: str = ""


def best_restricted(problem: PlanningProblem, allowed: list[np.ndarray]) -> SearchResult:
    """The best plan using only ``allowed`` candidates per call: exact when small, else
    coordinate descent from two starts (fastest and leanest candidates)."""
    sizes = [len(a) for a in allowed]
    total = int(np.prod([float(s) for s in sizes]))
    if total <= EXACT_LIMIT:
        flat = np.arange(total)
        idx = np.stack(np.unravel_index(flat, sizes), axis=1)
        X = np.stack([allowed[c][idx[:, c]] for c in range(len(allowed))], axis=1)
        ms, ov = evaluate_batch(problem, X)
        e = energy(ms, ov, DESCENT_PENALTY)
        i = int(np.argmin(e))
        ok = bool(ov[i] <= 0)
        return SearchResult(
            tuple(int(v) for v in X[i]), float(ms[i]) if ok else np.inf, ok, "exact", total, 0.0
        )
    tabs = problem.tables
    lean = tuple(
        int(a[np.argmin(tabs[c].transient[a] + tabs[c].persistent[a])]) for c, a in enumerate(allowed)
    )
    runs = [
        coordinate_descent(problem, allowed=allowed),
        coordinate_descent(problem, start=lean, allowed=allowed),
    ]
    return min(runs, key=lambda r: r.makespan)


def _layouts_on(problem: PlanningProblem, c: int, mesh: int) -> set[tuple[int, int, int]]:
    tab = problem.tables[c]
    sel = np.nonzero(tab.mesh == mesh)[0]
    return {(int(tab.dp[i]), int(tab.tp[i]), int(tab.pp[i])) for i in sel}


def _where(problem: PlanningProblem, c: int, mesh: int, layout=None) -> np.ndarray:
    tab = problem.tables[c]
    ok = tab.mesh == mesh
    if layout is not None:
        ok &= (tab.dp == layout[0]) & (tab.tp == layout[1]) & (tab.pp == layout[2])
    return np.nonzero(ok)[0]


def _min_time(problem: PlanningProblem, c: int, allowed: np.ndarray) -> float:
    return float(problem.tables[c].time[allowed].min()) if len(allowed) else np.inf


def _fmt_layout(layout) -> str:
    return f"dp{layout[0]} tp{layout[1]} pp{layout[2]}"


def colocated(problem: PlanningProblem) -> BaselineResult:
    name = "colocated"
    full = problem.full_mesh
    if full < 0:
        return BaselineResult(name, "", None, "the whole cluster is not one valid mesh")
    common = set.intersection(*[_layouts_on(problem, c, full) for c in range(problem.n_calls)])
    best: tuple[SearchResult, tuple] | None = None
    for layout in sorted(common):
        allowed = [_where(problem, c, full, layout) for c in range(problem.n_calls)]
        r = best_restricted(problem, allowed)
        if r.feasible and (best is None or r.makespan < best[0].makespan):
            best = (r, layout)
    label = f"all calls on devices {problem.meshes[full].label()}"
    if best is None:
        return BaselineResult(name, label, None, "no single layout fits every call in memory")
    return BaselineResult(name, f"{label}, {_fmt_layout(best[1])}", best[0])


def _partitions(problem: PlanningProblem, n_parts: int) -> list[list[int]]:
    """Ordered tilings of the cluster by ``n_parts`` contiguous valid meshes."""
    starts: dict[int, list[int]] = {}
    for i, m in enumerate(problem.meshes):
        starts.setdefault(m.start, []).append(i)
    out: list[list[int]] = []

    def walk(offset: int, acc: list[int]) -> None:
        if len(acc) == n_parts:
            if offset == problem.n_devices:
                out.append(list(acc))
            return
        for i in starts.get(offset, []):
            acc.append(i)
            walk(problem.meshes[i].stop, acc)
            acc.pop()

    walk(0, [])
    return out


def separate(problem: PlanningProblem) -> BaselineResult:
    name = "separate"
    calls = problem.graph.calls
    models = list(dict.fromkeys(c.model for c in calls))
    parts = _partitions(problem, len(models))
    if not parts:
        return BaselineResult(name, "", None, f"needs at least {len(models)} devices, one per model")
    ranked = []
    for part in parts:
        mesh_of = dict(zip(models, part, strict=True))
        allowed = [_where(problem, c, mesh_of[call.model]) for c, call in enumerate(calls)]
        if any(len(a) == 0 for a in allowed):
            continue
        load = {m: 0.0 for m in models}  # calls of one model serialise on its block
        for c, call in enumerate(calls):
            load[call.model] += _min_time(problem, c, allowed[c])
        ranked.append((max(load.values()), part, allowed))
    return _shortlist(problem, name, ranked, lambda part: ", ".join(
        f"{'policy+rollout' if m == 'policy' else m} {problem.meshes[i].label()}"
        for m, i in zip(models, part, strict=True)
    ))  # fmt: skip


def split_generation(problem: PlanningProblem) -> BaselineResult:
    name = "split-generation"
    calls = problem.graph.calls
    gen = [c for c, call in enumerate(calls) if call.kind == "generate"]
    rest = [c for c in range(problem.n_calls) if c not in gen]
    ranked = []
    for part in _partitions(problem, 2):
        for g_mesh, r_mesh in (part, part[::-1]):
            layouts = [_layouts_on(problem, c, r_mesh) for c in rest]
            common = set.intersection(*layouts) if layouts else set()
            for layout in sorted(common):
                allowed: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * problem.n_calls
                for c in gen:
                    allowed[c] = _where(problem, c, g_mesh)
                for c in rest:
                    allowed[c] = _where(problem, c, r_mesh, layout)
                if any(len(a) == 0 for a in allowed):
                    continue
                bound = sum(_min_time(problem, c, allowed[c]) for c in range(problem.n_calls))
                ranked.append((bound, (g_mesh, r_mesh, layout), allowed))
    if not ranked:
        return BaselineResult(name, "", None, "needs at least 2 devices")
    return _shortlist(problem, name, ranked, lambda key: (
        f"rollout {problem.meshes[key[0]].label()}; other calls {problem.meshes[key[1]].label()}, "
        f"{_fmt_layout(key[2])}"
    ))  # fmt: skip


def _shortlist(problem, name, ranked, describe) -> BaselineResult:
    """Search strategies for the placements with the best lower bounds; keep the best plan."""
    ranked.sort(key=lambda r: r[0])
    best, found = None, 0
    for _, key, allowed in ranked[: 4 * SHORTLIST]:
        r = best_restricted(problem, allowed)
        if r.feasible:
            found += 1
            if best is None or r.makespan < best[0].makespan:
                best = (r, key)
        if found >= SHORTLIST:
            break
    if best is None:
        return BaselineResult(name, "", None, "no placement of this kind fits in memory")
    return BaselineResult(name, describe(best[1]), best[0])


def all_baselines(problem: PlanningProblem) -> list[BaselineResult]:
    return [colocated(problem), separate(problem), split_generation(problem)]
