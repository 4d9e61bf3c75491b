"""`--ray.plan plan.json`: a plan written by `alignkit plan --output` is the Ray executor's placement."""

from __future__ import annotations

import json
import logging

import pytest

from alignkit.config.parse import parse_config
from alignkit.config.rl import RLConfig
from alignkit.config.schema import RayConfig
from alignkit.errors import ConfigError
from alignkit.orchestration.plan_file import load_plan
from alignkit.orchestration.ray.placement import Seat, plan_layout
from alignkit.planner.command import main as plan_main
from alignkit.planner.plan_io import save_plan

STRATEGY = {"dp": 1, "tp": 1, "pp": 1, "zero": 0, "micro_batches": 1, "recompute": False}


def _role(devices: list[int], call: str) -> dict:
    strategy = STRATEGY | {"dp": len(devices)}
    return {"model": "tiny", "devices": devices, "bundles": devices,
            "calls": {call: {"devices": devices, "strategy": strategy}}}


def _write(tmp_path, roles: dict) -> str:
    path = tmp_path / "plan.json"
    save_plan({"version": 1, "cluster": {"nodes": 1, "devices_per_node": 2, "device": "h100"}, "roles": roles}, path)
    return str(path)


def test_a_plan_from_alignkit_plan_places_every_role(tmp_path, capsys):
    path = tmp_path / "plan.json"
    assert plan_main(["--actor", "125m", "--algo", "ppo", "--reward", "none", "--devices", "1x2",
                      "--batch", "8", "--prompt-len", "32", "--gen-len", "16", "--minibatches", "1",
                      "--output", str(path)]) == 0
    capsys.readouterr()
    planned = {r: p["bundles"] for r, p in load_plan(path)["roles"].items()}
    assert set(planned) == {"policy", "critic", "reference", "rollout"}  # a rule reward is no model call
    workers = {"policy": 1, "rollout": 1, "reward": 1, "reference": 1, "critic": 1}
    layout = plan_layout(workers, RayConfig(plan=str(path), gpus_per_worker=1.0), light={"reward"})
    assert {r: [s.bundle for s in seats] for r, seats in layout.seats.items()} == (
        {r: b[:1] for r, b in planned.items()} | {"reward": planned["rollout"][:1]})
    assert len(layout.bundles) == 1 + max(max(b) for b in planned.values())


def test_two_devices_policy_on_one_rollout_and_reward_on_the_other(tmp_path):
    path = _write(tmp_path, {"policy": _role([0], "train"), "rollout": _role([1], "generate")})
    layout = plan_layout({"policy": 1, "rollout": 1, "reward": 1}, RayConfig(plan=path, gpus_per_worker=1.0),
                         light={"reward"})
    assert layout.bundles == [{"CPU": 1.0, "GPU": 1.0}] * 2
    assert layout.seats == {"policy": [Seat(0, 1.0, 1.0)], "rollout": [Seat(1, 0.5, 0.5)],
                            "reward": [Seat(1, 0.5, 0.5)]}


def test_workers_spread_over_the_planned_devices_and_a_mismatch_is_logged(tmp_path, caplog):
    path = _write(tmp_path, {"policy": _role([0, 1], "train"), "rollout": _role([0, 1], "generate")})
    layout = plan_layout({"policy": 2, "rollout": 1, "reward": 1}, RayConfig(plan=path), light={"reward"})
    assert [s.bundle for s in layout.seats["policy"]] == [0, 1]
    assert [s.bundle for s in layout.seats["rollout"]] == [0] == [s.bundle for s in layout.seats["reward"]]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"--ray.plan {path} gives rollout 2 device(s) but the run has 1 rollout worker(s)"]


def test_plan_errors_name_the_flag_and_the_file(tmp_path):
    workers = {"policy": 1, "rollout": 1, "reward": 1, "critic": 1}
    path = _write(tmp_path, {"policy": _role([0], "train"), "rollout": _role([1], "generate")})
    with pytest.raises(ConfigError) as e:
        plan_layout(workers, RayConfig(plan=path), light={"reward"})
    assert str(e.value) == (f"--ray.plan {path} gives no bundle to critic (it maps policy, rollout); make the "
                            "plan for this run's roles (alignkit plan --algo, --critic, --ref, --reward) or change the run")
    with pytest.raises(ConfigError) as e:  # a reward model needs a device: the plan must place it
        plan_layout({"policy": 1, "rollout": 1, "reward": 1}, RayConfig(plan=path))
    assert str(e.value).startswith(f"--ray.plan {path} gives no bundle to reward (it maps policy, rollout)")
    with pytest.raises(ConfigError) as e:
        plan_layout(workers, RayConfig(plan=path, bundles={"policy": [0]}))
    assert str(e.value) == "--ray.plan and --ray.bundles both map roles to bundles: give one of them"
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as e:
        plan_layout(workers, RayConfig(plan=str(missing)))
    assert str(e.value) == f"--ray.plan: plan file '{missing}' does not exist"
    bad = tmp_path / "bad.json"
    plan = load_plan(path)
    plan["roles"]["policy"]["calls"]["train"]["strategy"]["tp"] = 0
    bad.write_text(json.dumps(plan))
    with pytest.raises(ConfigError) as e:
        plan_layout(workers, RayConfig(plan=str(bad)))
    assert str(e.value) == (f"--ray.plan: {bad} fails the plan schema:\n"
                            "  roles.policy.calls.train.strategy.tp: must be a positive integer, got 0\n"
                            "  roles.policy.calls.train.strategy: dp*tp*pp = 0 but the call has 1 devices")


def test_plan_flag_parses():
    cfg = parse_config(RLConfig, ["--executor", "ray", "--ray.plan", "plan.json"], "alignkit rl")
    assert cfg.ray.plan == "plan.json" and cfg.ray.bundles == {}
