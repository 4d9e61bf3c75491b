"""Searching for the fastest feasible plan: exhaustive, simulated annealing, coordinate descent.

Exhaustive search scores every combination of candidates in vectorised chunks; it is exact and
practical only for small clusters (the space is the product of the per-call candidate counts).

Simulated annealing follows ReaLHF (an MCMC walk over plans with a Metropolis acceptance on the
estimated iteration time). It runs many independent chains at once so that each step is one
batched evaluation, and it uses four kinds of moves: re-draw a call's (mesh, strategy); change
the strategy but keep the mesh; keep the strategy but shift the mesh; put the call on another
call's mesh (colocation). Energy is log(time) so the temperature is scale free; plans that do not
fit in memory pay a penalty that grows with the overflow, so chains walk out of them. Everything
random comes from one seeded generator: the same seed gives the same plan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from alignkit.errors import ConfigError
from alignkit.planner.hardware import GIB
from alignkit.planner.problem import PlanningProblem
from alignkit.planner.simulate import evaluate_batch

EXHAUSTIVE_LIMIT = 5_000_000
DESCENT_PENALTY = 100.0  # > any log-time spread: descent prefers any feasible plan


@dataclass(frozen=True)
class SearchResult:
    choice: tuple[int, ...]  # candidate index per call
    makespan: float  # estimated seconds per iteration (inf when nothing feasible was found)
    feasible: bool
    method: str
    evaluations: int
    seconds: float


def energy(makespan: np.ndarray, overflow: np.ndarray, penalty: float = 3.0) -> np.ndarray:
    """log(seconds), plus a penalty for plans that overflow memory (``penalty`` + 0.25 per GiB
    over). The annealer's small penalty lets chains cross infeasible regions; descent uses a
    large one so that it never trades a feasible plan for an infeasible one."""
    return np.log(makespan) + np.where(overflow > 0, penalty + overflow / GIB / 4, 0.0)


class _Best:
    """The best feasible plan seen; ties keep the first (deterministic)."""

    def __init__(self):
        self.makespan = np.inf
        self.choice: tuple[int, ...] | None = None

    def update(self, X: np.ndarray, makespan: np.ndarray, overflow: np.ndarray) -> None:
        ok = overflow <= 0
        if not ok.any():
            return
        ms = np.where(ok, makespan, np.inf)
        i = int(np.argmin(ms))
        if ms[i] < self.makespan:
            self.makespan, self.choice = float(ms[i]), tuple(int(v) for v in X[i])


def exhaustive(problem: PlanningProblem, limit: float = EXHAUSTIVE_LIMIT, chunk: int = 16384) -> SearchResult:
    """Score every plan. Raises ConfigError when the space exceeds ``limit``."""
    t0 = time.perf_counter()
    sizes = [t.n for t in problem.tables]
    space = problem.space_size
    if space > limit:
        raise ConfigError(
            f"exhaustive search would score {space:.3g} plans (limit {limit:.3g}); "
            "use --search anneal, or fewer devices"
        )
    total = int(space)
    best = _Best()
    for lo in range(0, total, chunk):
        flat = np.arange(lo, min(lo + chunk, total))
        X = np.stack(np.unravel_index(flat, sizes), axis=1)
        best.update(X, *evaluate_batch(problem, X))
    return SearchResult(
        best.choice or tuple([0] * problem.n_calls), best.makespan, best.choice is not None,
        "exhaustive", total, time.perf_counter() - t0,
    )  # fmt: skip


def _propose(problem: PlanningProblem, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One move per chain (see the module docstring)."""
    K, C = X.shape
    Y = X.copy()
    which = rng.integers(C, size=K)
    kind = rng.random(K)
    other = rng.integers(C, size=K)
    u = rng.random(K)
    rows = np.arange(K)
    meshes = np.stack([problem.tables[c].mesh[X[:, c]] for c in range(C)], axis=1)
    layouts = np.stack([problem.tables[c].layout[X[:, c]] for c in range(C)], axis=1)
    for c in range(C):
        sel = rows[which == c]
        if sel.size == 0:
            continue
        tab = problem.tables[c]
        cur = X[sel, c]
        k, r = kind[sel], u[sel]
        redraw = (r * tab.n).astype(np.int64)
        same_mesh = tab.group_first[cur] + (r * tab.group_count[cur]).astype(np.int64)
        same_strategy = tab.by_strategy[tab.strat_first[cur] + (r * tab.strat_count[cur]).astype(np.int64)]
        # Run where (and, if possible, laid out like) another call runs: colocation, and layouts
        # shared with the model's home so no weights move.
        o = other[sel]
        t_mesh, t_lay = meshes[sel, o], layouts[sel, o]
        cnt = tab.mesh_count[t_mesh]
        coloc = np.where(cnt > 0, tab.mesh_first[t_mesh] + (r * cnt).astype(np.int64), cur)
        lcnt = tab.layout_count[t_mesh, t_lay]
        like = np.where(lcnt > 0, tab.layout_first[t_mesh, t_lay] + (r * lcnt).astype(np.int64), coloc)
        new = np.select(
            [k < 0.2, k < 0.45, k < 0.65, k < 0.8], [redraw, same_mesh, same_strategy, coloc], like
        )
        Y[sel, c] = new
    # Sometimes carry the other calls of the same model along (same mesh and layout): moving a
    # model's training and its inference together is one step instead of an uphill pair.
    group = rng.random(K) < 0.15
    for c in range(C):
        sel = rows[group & (which == c)]
        if sel.size == 0:
            continue
        mesh_c = problem.tables[c].mesh[Y[sel, c]]
        lay_c = problem.tables[c].layout[Y[sel, c]]
        for o in problem.same_model[c]:
            tab = problem.tables[o]
            cnt = tab.layout_count[mesh_c, lay_c]
            pick = tab.layout_first[mesh_c, lay_c] + (u[sel] * cnt).astype(np.int64)
            Y[sel, o] = np.where(cnt > 0, pick, Y[sel, o])
    return Y


def anneal(
    problem: PlanningProblem,
    seed: int = 0,
    steps: int | None = None,
    chains: int = 32,
    inits: list[tuple[int, ...]] | None = None,
    t_start: float = 0.3,
    t_end: float = 0.003,
    polish: int = 4,
) -> SearchResult:
    """Simulated annealing with ``chains`` parallel chains and a geometric cooling schedule.
    ``inits`` seed the first chains (e.g. the heuristic baselines); the rest start at random."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    if steps is None:
        # Larger spaces get longer walks; a few hundred steps per chain suffice on small ones.
        steps = int(np.clip(40 * np.log2(max(problem.space_size, 2.0)), 200, 1500))
    X = np.stack([rng.integers(t.n, size=chains) for t in problem.tables], axis=1)
    for i, init in enumerate((inits or [])[:chains]):
        X[i] = init
    ms, ov = evaluate_batch(problem, X)
    E = energy(ms, ov)
    best = _Best()
    best.update(X, ms, ov)
    evaluations = chains
    for step in range(steps):
        temp = t_start * (t_end / t_start) ** (step / max(steps - 1, 1))
        Y = _propose(problem, X, rng)
        ms_y, ov_y = evaluate_batch(problem, Y)
        E_y = energy(ms_y, ov_y)
        evaluations += chains
        best.update(Y, ms_y, ov_y)
        accept = (E_y <= E) | (rng.random(chains) < np.exp(-(E_y - E) / temp))
        X = np.where(accept[:, None], Y, X)
        E = np.where(accept, E_y, E)
    # Polish the best-ever plan and the best few distinct chain end states by coordinate
    # descent: chains end in different basins, and a basin's floor is cheap to reach.
    starts: list[tuple[int, ...]] = [best.choice] if best.choice is not None else []
    for i in np.argsort(E, kind="stable"):
        state = tuple(int(v) for v in X[i])
        if state not in starts:
            starts.append(state)
        if len(starts) >= polish:
            break
    if best.choice is not None:
        result = SearchResult(best.choice, best.makespan, True, "anneal", 0, 0.0)
    else:
        result = SearchResult(tuple(int(v) for v in X[int(np.argmin(E))]), np.inf, False, "anneal", 0, 0.0)
    for state in starts:
        r = coordinate_descent(problem, start=state, local=True)
        evaluations += r.evaluations
        if r.feasible and r.makespan < result.makespan:
            result = r
    return SearchResult(
        result.choice, result.makespan, result.feasible, "anneal", evaluations, time.perf_counter() - t0
    )


def neighbourhood(problem: PlanningProblem, choice, c: int) -> np.ndarray:
    """Candidates of call ``c`` near a plan: every strategy on its current mesh or on a mesh
    another call uses (colocation), and its current strategy on every other mesh of that size."""
    tab = problem.tables[c]
    cur = int(choice[c])
    parts = [tab.by_strategy[tab.strat_first[cur] : tab.strat_first[cur] + tab.strat_count[cur]]]
    for o in range(problem.n_calls):
        m = problem.tables[o].mesh[choice[o]] if o != c else tab.mesh[cur]
        if tab.mesh_count[m]:
            parts.append(np.arange(tab.mesh_first[m], tab.mesh_first[m] + tab.mesh_count[m]))
    return np.unique(np.concatenate(parts))


def coordinate_descent(
    problem: PlanningProblem,
    start: tuple[int, ...] | None = None,
    allowed: list[np.ndarray] | None = None,
    rounds: int = 6,
    chunk: int = 8192,
    local: bool = False,
) -> SearchResult:
    """Improve one call at a time, trying all of its (allowed) candidates with the others fixed,
    until no call changes. ``allowed`` restricts each call's candidates (the baselines);
    ``local`` tries only the :func:`neighbourhood` of the current plan (cheap on large clusters)."""
    t0 = time.perf_counter()
    allowed = allowed or [np.arange(t.n) for t in problem.tables]
    if start is None:  # fastest allowed candidate per call
        start = tuple(int(a[np.argmin(problem.tables[c].time[a])]) for c, a in enumerate(allowed))
    cur = np.array(start, dtype=np.int64)
    ms, ov = evaluate_batch(problem, cur[None])
    cur_e = float(energy(ms, ov, DESCENT_PENALTY)[0])
    evaluations = 1
    for _ in range(rounds):
        changed = False
        for c in range(problem.n_calls):
            cand = neighbourhood(problem, cur, c) if local else allowed[c]
            for lo in range(0, len(cand), chunk):
                part = cand[lo : lo + chunk]
                X = np.repeat(cur[None], len(part), axis=0)
                X[:, c] = part
                ms, ov = evaluate_batch(problem, X)
                e = energy(ms, ov, DESCENT_PENALTY)
                evaluations += len(part)
                i = int(np.argmin(e))
                if e[i] < cur_e - 1e-12:
                    cur, cur_e, changed = X[i].copy(), float(e[i]), True
        if not changed:
            break
    ms, ov = evaluate_batch(problem, cur[None])
    feasible = bool(ov[0] <= 0)
    return SearchResult(
        tuple(int(v) for v in cur), float(ms[0]) if feasible else np.inf, feasible,
        "coordinate", evaluations, time.perf_counter() - t0,
    )  # fmt: skip
