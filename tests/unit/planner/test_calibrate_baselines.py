"""Calibration fitting, step-time prediction, and the heuristic baselines."""

from __future__ import annotations

import pytest

from alignkit.errors import ConfigError
from alignkit.planner.baselines import colocated, separate, split_generation
from alignkit.planner.calibrate import Measurement, fit, predict_step_time, tiny_llama_config
from alignkit.planner.efficiency import Efficiency, load_efficiency, save_efficiency
from alignkit.planner.graph import Workload, build_graph
from alignkit.planner.hardware import DeviceKind, make_cluster
from alignkit.planner.models import resolve_model
from alignkit.planner.problem import build_problem

DEV = DeviceKind("test", peak_flops=1e12, memory_bytes=1e10, hbm_bandwidth=1e11,
                 intra_node_bandwidth=1e10, inter_node_bandwidth=1e9)  # fmt: skip


def test_fit_recovers_known_factors():
    # A machine at 40% of peak in matmuls, 20% in attention, 50% of bandwidth, 2 ms per pass.
    ms = [
        Measurement("mm", "matmul", 1e12 / (0.4 * 1e12), matmul_flops=1e12),
        Measurement("attn", "attention", 1e11 / (0.2 * 1e12), attention_flops=1e11),
        Measurement("copy", "memory", 1e10 / (0.5 * 1e11), bytes=1e10),
        # forward: 1e10 FLOPs -> 0.025 s at 40%, + 2 ms overhead
        Measurement("fwd", "model", 0.025 + 0.002, matmul_flops=1e10, passes=1),
        # fwd+bwd: 3e10 FLOPs -> 0.075 s, + 2 passes * 2 ms
        Measurement("fwdbwd", "model", 0.075 + 0.004, matmul_flops=3e10, passes=2),
        # decode: memory bound, 1e9 bytes at 50% -> 0.02 s, + 2 ms
        Measurement("dec", "model", 0.02 + 0.002, matmul_flops=1e6, bytes=1e9, passes=1),
    ]
    eff = fit(ms, DEV)
    assert eff.compute == pytest.approx(0.4)
    assert eff.attention == pytest.approx(0.2)
    assert eff.memory == pytest.approx(0.5)
    assert eff.overhead_s == pytest.approx(0.002)
    assert eff.device == "test"


def test_overhead_fits_relative_errors_so_short_passes_count():
    # Residuals beyond the ideal time: 10 ms on a 100 ms forward, 2 ms on a 4 ms decode step. Least
    # squares on relative errors: o = sum(p r / t^2) / sum(p^2 / t^2) = (1 + 125) / (100 + 62500).
    ms = [Measurement("fwd", "model", 0.100, bytes=0.090 * 1e11), Measurement("dec", "model", 0.004, bytes=0.002 * 1e11)]
    ms += [Measurement("copy", "memory", 1.0, bytes=1e11)]  # memory efficiency 1.0: ideal = bytes / 1e11
    assert fit(ms, DEV).overhead_s == pytest.approx(126 / 62600)


def test_efficiency_file_round_trip_and_errors(tmp_path):
    f = tmp_path / "c.json"
    eff = Efficiency(compute=0.3, attention=0.2, memory=0.6, overhead_s=0.004, device="cpu", source="test")
    save_efficiency(eff, f, {"measurements": []})
    assert load_efficiency(f) == eff
    f.write_text('{"version": 1, "compute": 0.3}')
    with pytest.raises(ConfigError, match="missing"):
        load_efficiency(f)
    f.write_text('{"version": 1, "compute": 7, "attention": 0.1, "memory": 0.1, "overhead_s": 0}')
    with pytest.raises(ConfigError, match="compute must be in"):
        load_efficiency(f)


def test_predict_step_time_for_the_rl_trainer():
    eff = Efficiency(device="cpu")
    cfg = tiny_llama_config("tiny")  # a transformers LlamaConfig, as the RL trainer would hold
    short = predict_step_time(cfg, Workload(8, 32, 16, group_size=4), eff)
    long = predict_step_time(cfg, Workload(8, 32, 64, group_size=4), eff)
    assert 0 < short < long
    assert predict_step_time("125m", Workload(8, 32, 16), eff, algo="ppo") > 0


def _problem(devices: str, algo: str = "ppo"):
    m = resolve_model("1b")
    kw = dict(critic=m) if algo == "ppo" else {}
    g = build_graph(algo, m, Workload(64, 256, 256, minibatches=2), reference=m, reward=m, **kw)
    return build_problem(g, make_cluster(devices, "a100-80g"))


def test_colocated_baseline_uses_all_devices_and_one_layout():
    p = _problem("1x8")
    b = colocated(p)
    assert b.result is not None and b.result.feasible
    layouts = {p.strategy_of(c, b.result.choice[c]).layout for c in range(p.n_calls)}
    assert len(layouts) == 1
    assert all(p.mesh_of(c, b.result.choice[c]).size == 8 for c in range(p.n_calls))


def test_separate_baseline_gives_each_model_its_own_devices():
    p = _problem("1x8")
    b = separate(p)
    assert b.result is not None
    by_model: dict[str, set] = {}
    for c, call in enumerate(p.graph.calls):
        by_model.setdefault(call.model, set()).add(p.mesh_of(c, b.result.choice[c]))
    assert all(len(meshes) == 1 for meshes in by_model.values())
    meshes = [next(iter(v)) for v in by_model.values()]
    assert not any(a.overlaps(b_) for i, a in enumerate(meshes) for b_ in meshes[i + 1 :])


def test_split_generation_baseline():
    p = _problem("1x8")
    b = split_generation(p)
    assert b.result is not None
    gen = p.mesh_of(0, b.result.choice[0])
    others = {p.mesh_of(c, b.result.choice[c]) for c in range(1, p.n_calls)}
    assert len(others) == 1 and not gen.overlaps(next(iter(others)))


def test_baselines_that_do_not_fit_the_cluster_say_why():
    p = _problem("1x2")
    b = separate(p)
    assert b.result is None and "needs at least 4 devices" in b.note
