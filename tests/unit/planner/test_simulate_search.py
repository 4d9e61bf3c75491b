"""Simulator on hand-built graphs with known durations; search finds known optima."""

from __future__ import annotations

import time

import numpy as np
import pytest

from alignkit.errors import ConfigError
from alignkit.planner.efficiency import Efficiency
from alignkit.planner.graph import Call, DataflowGraph, Workload, build_graph
from alignkit.planner.hardware import ClusterSpec, get_device, make_cluster
from alignkit.planner.models import NAMED_MODELS, resolve_model
from alignkit.planner.planning import run_planner
from alignkit.planner.problem import CandidateTable, Entry, PlanningProblem, build_problem
from alignkit.planner.search import anneal, coordinate_descent, exhaustive
from alignkit.planner.simulate import evaluate_batch, simulate
from alignkit.planner.strategy import DeviceMesh, ParallelStrategy, enumerate_meshes

CLUSTER = ClusterSpec(1, 2, get_device("h100"))
MESHES = enumerate_meshes(CLUSTER)  # [0], [1], [0-1]
DEV0, DEV1, BOTH = (MESHES.index(DeviceMesh(s, n)) for s, n in ((0, 1), (1, 1), (0, 2)))


def hand_problem(options: dict[str, list[tuple[int, float, float]]], usable: float = 1e30) -> PlanningProblem:
    """gen -> (reward, reference) -> train; options[call] = [(mesh, seconds, persistent bytes)]."""
    m = NAMED_MODELS["125m"]
    calls = (
        Call("rollout.generate", "rollout", "policy", "generate"),
        Call("reward.score", "reward", "reward", "inference", ("rollout.generate",)),
        Call("reference.logprobs", "reference", "reference", "inference", ("rollout.generate",)),
        Call("policy.train", "policy", "policy", "train", ("reward.score", "reference.logprobs")),
    )
    graph = DataflowGraph("hand", calls, {"policy": m, "reward": m, "reference": m}, Workload(2, 8, 8))
    tables = []
    for call in calls:
        entries = [
            Entry(mesh, ParallelStrategy(MESHES[mesh].size, 1, 1), t, mem, 0.0, 0.0)
            for mesh, t, mem in options[call.name]
        ]
        tables.append(CandidateTable(entries, MESHES))
    return PlanningProblem(graph, CLUSTER, Efficiency(), MESHES, tables, usable_memory=usable)


def fixed(gen, reward, ref, train):
    return {
        "rollout.generate": [gen],
        "reward.score": [reward],
        "reference.logprobs": [ref],
        "policy.train": [train],
    }


def test_parallel_branches_and_critical_path():
    # gen on both devices 5 s; reward on device 0 2 s and reference on device 1 3 s in parallel;
    # train on both 4 s: 5 + max(2, 3) + 4 = 12, through the reference.
    p = hand_problem(fixed((BOTH, 5, 0), (DEV0, 2, 0), (DEV1, 3, 0), (BOTH, 4, 0)))
    s = simulate(p, [0, 0, 0, 0])
    assert s.makespan == 12
    assert s.critical_path == ("rollout.generate", "reference.logprobs", "policy.train")
    ev = {e.name: (e.start, e.end) for e in s.events}
    assert ev == {
        "rollout.generate": (0, 5), "reward.score": (5, 7), "reference.logprobs": (5, 8), "policy.train": (8, 12),
    }  # fmt: skip
    assert evaluate_batch(p, np.array([[0, 0, 0, 0]]))[0][0] == 12


def test_calls_on_the_same_devices_serialise():
    p = hand_problem(fixed((BOTH, 5, 0), (DEV0, 2, 0), (DEV0, 3, 0), (BOTH, 4, 0)))
    s = simulate(p, [0, 0, 0, 0])
    assert s.makespan == 5 + 2 + 3 + 4
    # the reference waited for device 0, held by the reward model
    assert s.critical_path == ("rollout.generate", "reward.score", "reference.logprobs", "policy.train")


def test_memory_overflow_is_infeasible_with_the_reason():
    p = hand_problem(fixed((BOTH, 5, 1), (DEV0, 2, 6), (DEV0, 3, 6), (BOTH, 4, 1)), usable=10)
    s = simulate(p, [0, 0, 0, 0])
    assert not s.feasible
    assert "device 0" in s.reason and "reward state" in s.reason and "reference state" in s.reason
    assert evaluate_batch(p, np.array([[0, 0, 0, 0]]))[1][0] == pytest.approx(13 - 10)


SMALL_OPTIONS = {
    "rollout.generate": [(BOTH, 5, 0), (DEV0, 9, 0)],
    # alone on one device 2 s / 3 s, or 1.5 s / 2 s on both: best is side by side (3 s)
    "reward.score": [(DEV0, 2, 0), (DEV1, 2, 0), (BOTH, 1.5, 0)],
    "reference.logprobs": [(DEV0, 3, 0), (DEV1, 3, 0), (BOTH, 2, 0)],
    "policy.train": [(BOTH, 4, 0), (DEV1, 7, 0)],
}


def test_exhaustive_and_annealing_find_the_known_optimum():
    p = hand_problem(SMALL_OPTIONS)
    best = exhaustive(p)
    assert best.makespan == 12
    got = anneal(p, seed=3, steps=100, chains=8)
    assert got.makespan == 12
    s = simulate(p, got.choice)
    meshes = {e.name: e.meshes[0] for e in s.events}
    assert meshes["reward.score"] != meshes["reference.logprobs"]  # side by side
    assert meshes["rollout.generate"] == DeviceMesh(0, 2)


def test_infeasible_options_are_avoided():
    # both frozen models on device 0 would overflow: the search puts them apart even though the
    # colocated version is tied otherwise.
    opts = dict(SMALL_OPTIONS)
    opts["reward.score"] = [(DEV0, 2, 6), (BOTH, 1, 6)]
    opts["reference.logprobs"] = [(DEV0, 3, 6), (DEV1, 3, 6)]
    p = hand_problem(opts, usable=10)
    best = exhaustive(p)
    assert best.feasible
    s = simulate(p, best.choice)
    assert s.feasible and s.makespan == 12


def _small_real_problem():
    m = resolve_model("1b")
    g = build_graph("grpo", m, Workload(64, 256, 256, group_size=4, minibatches=2))
    return build_problem(g, make_cluster("1x4", "a100-40g"))


def test_batched_evaluator_agrees_with_the_detailed_simulator():
    m = resolve_model("125m")
    g = build_graph("ppo", m, Workload(16, 64, 64, minibatches=2), critic=m, reference=m, reward=m)
    p = build_problem(g, make_cluster("1x4", "a100-40g"))
    rng = np.random.default_rng(0)
    X = np.stack([rng.integers(t.n, size=50) for t in p.tables], axis=1)
    ms, ov = evaluate_batch(p, X)
    for i in range(len(X)):
        s = simulate(p, X[i])
        assert s.makespan == pytest.approx(ms[i], rel=1e-12)
        assert s.feasible == (ov[i] <= 0)


def test_annealing_matches_exhaustive_on_a_small_cluster():
    p = _small_real_problem()
    assert p.space_size < 2e6
    best = exhaustive(p)
    assert best.feasible
    for seed in (0, 1):
        got = anneal(p, seed=seed)
        assert got.makespan == pytest.approx(best.makespan, rel=1e-12)
        assert got.evaluations < p.space_size / 10  # it scored far fewer plans


def test_exhaustive_refuses_huge_spaces():
    m = resolve_model("7b")
    g = build_graph("ppo", m, Workload(64, 256, 256), critic=m, reference=m, reward=m)
    p = build_problem(g, make_cluster("2x8", "h100"))
    with pytest.raises(ConfigError, match="use --search anneal"):
        exhaustive(p)


def test_coordinate_descent_never_gets_worse():
    p = _small_real_problem()
    start = tuple(int(t.n - 1) for t in p.tables)
    r = coordinate_descent(p, start=start)
    ms, ov = evaluate_batch(p, np.array([start]))
    assert r.feasible and (ov[0] > 0 or r.makespan <= ms[0])


def test_same_seed_same_plan():
    m = resolve_model("13b")
    g = build_graph("ppo", m, Workload(128, 512, 512, minibatches=2), critic=m, reference=m, reward=m)
    cluster = make_cluster("2x8", "h100")
    a = run_planner(g, cluster, seed=7, steps=150)
    b = run_planner(g, cluster, seed=7, steps=150)
    assert a.result.choice == b.result.choice
    assert a.schedule.makespan == b.schedule.makespan


def test_128_device_search_takes_seconds_and_beats_the_baselines():
    m = resolve_model("70b")
    g = build_graph("ppo", m, Workload(512, 1024, 1024, minibatches=4), critic=m, reference=m, reward=m)
    t0 = time.perf_counter()
    out = run_planner(g, make_cluster("16x8", "h100"), seed=0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 30
    assert out.schedule.feasible
    for b in out.baselines:
        if b.result is not None:
            assert out.schedule.makespan <= b.result.makespan + 1e-9
