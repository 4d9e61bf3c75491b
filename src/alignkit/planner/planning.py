"""One planning run: build the problem, score the baselines, search, simulate the winner."""

from __future__ import annotations

import time
from dataclasses import dataclass

from alignkit.errors import ConfigError
from alignkit.planner.baselines import BaselineResult, all_baselines
from alignkit.planner.efficiency import Efficiency
from alignkit.planner.graph import DataflowGraph
from alignkit.planner.hardware import ClusterSpec
from alignkit.planner.problem import PlanningProblem, build_problem
from alignkit.planner.search import SearchResult, anneal, exhaustive
from alignkit.planner.simulate import Schedule, simulate

METHODS = ("anneal", "exhaustive")


@dataclass(frozen=True)
class PlanOutcome:
    problem: PlanningProblem
    result: SearchResult
    schedule: Schedule
    baselines: tuple[BaselineResult, ...]
    build_seconds: float

    def speedup_over(self, baseline: BaselineResult) -> float | None:
        if baseline.result is None or not baseline.result.feasible:
            return None
        return baseline.result.makespan / self.schedule.makespan


def run_planner(
    graph: DataflowGraph,
    cluster: ClusterSpec,
    eff: Efficiency | None = None,
    method: str = "anneal",
    seed: int = 0,
    steps: int | None = None,
) -> PlanOutcome:
    """Plan ``graph`` on ``cluster``. The annealer's first chains start from the baselines, so the
    plan is never worse than the best of them."""
    if method not in METHODS:
        raise ConfigError(f"unknown --search {method!r}; valid choices: {list(METHODS)}")
    t0 = time.perf_counter()
    problem = build_problem(graph, cluster, eff)
    build_seconds = time.perf_counter() - t0
    baselines = tuple(all_baselines(problem))
    if method == "exhaustive":
        result = exhaustive(problem)
    else:
        inits = [b.result.choice for b in baselines if b.result is not None and b.result.feasible]
        result = anneal(problem, seed=seed, steps=steps, inits=inits)
    if not result.feasible:
        raise ConfigError(
            f"no plan fits in memory on {cluster.describe()}: {simulate(problem, result.choice).reason}. "
            "Use more devices, devices with more memory, a smaller batch or shorter sequences"
        )
    schedule = simulate(problem, result.choice)
    return PlanOutcome(problem, result, schedule, baselines, build_seconds)
