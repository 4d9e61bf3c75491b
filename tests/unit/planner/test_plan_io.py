"""plan.json: round trip and the schema check the Ray executor relies on."""

from __future__ import annotations

import copy
import json

import pytest

from alignkit.errors import ConfigError
from alignkit.orchestration.plan_file import load_plan, validate_plan
from alignkit.planner.graph import Workload, build_graph
from alignkit.planner.hardware import make_cluster
from alignkit.planner.models import resolve_model
from alignkit.planner.plan_io import plan_to_dict, save_plan
from alignkit.planner.planning import run_planner


@pytest.fixture(scope="module")
def plan() -> dict:
    m = resolve_model("350m")
    g = build_graph("ppo", m, Workload(32, 128, 128, minibatches=2), critic=m, reference=m, reward=m)
    out = run_planner(g, make_cluster("1x4", "a100-80g"), steps=60)
    return plan_to_dict(out.problem, out.result.choice, out.schedule, {"policy": "350m"})


def test_plan_has_every_role_and_valid_strategies(plan):
    validate_plan(plan)
    assert plan["version"] == 1
    assert plan["cluster"] == {"nodes": 1, "devices_per_node": 4, "device": "a100-80g"}
    assert set(plan["roles"]) == {"policy", "critic", "reference", "reward", "rollout"}
    assert set(plan["roles"]["policy"]["calls"]) == {"logprobs", "train"}
    assert set(plan["roles"]["rollout"]["calls"]) == {"generate"}
    for role in plan["roles"].values():
        for call in role["calls"].values():
            s = call["strategy"]
            assert s["dp"] * s["tp"] * s["pp"] == len(call["devices"])
            assert set(call["devices"]) <= set(role["devices"])
    assert plan["estimate"]["seconds_per_iteration"] > 0


def test_round_trip(plan, tmp_path):
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    assert load_plan(path) == plan
    assert json.loads(path.read_text()) == plan


def _broken(plan, edit):
    p = copy.deepcopy(plan)
    edit(p)
    return p


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda p: p.update(version=2), "version: must be 1"),
        (lambda p: p["cluster"].update(nodes=0), "cluster.nodes: must be a positive integer"),
        (lambda p: p["roles"].update(actor=p["roles"]["policy"]), "unknown role 'actor'"),
        (lambda p: p["roles"]["policy"]["calls"]["train"]["strategy"].update(tp=0),
         "roles.policy.calls.train.strategy.tp: must be a positive integer"),
        (lambda p: p["roles"]["policy"]["calls"]["train"]["strategy"].update(zero=4), "must be 0, 1, 2 or 3"),
        (lambda p: p["roles"]["policy"]["calls"]["train"]["strategy"].update(dp=99), "dp*tp*pp = "),
        (lambda p: p["roles"]["policy"]["calls"]["train"]["strategy"].pop("micro_batches"), "missing field"),
        (lambda p: p["roles"]["critic"].update(devices=[0, 0]), "more than once"),
        (lambda p: p["roles"]["reward"].update(devices=[7]), "indices must be in 0..3"),
        (lambda p: p["roles"].pop("rollout"), "needs a rollout role"),
        (lambda p: p["roles"]["policy"]["calls"]["train"].update(devices=[9]), "indices must be in 0..3"),
    ],
)  # fmt: skip
def test_schema_errors_name_the_path(plan, edit, message):
    with pytest.raises(ConfigError, match="fails the plan schema") as info:
        validate_plan(_broken(plan, edit))
    assert message in str(info.value)


def test_call_devices_outside_the_role(plan):
    def edit(p):
        p["roles"]["reward"]["devices"] = [0]
        p["roles"]["reward"]["bundles"] = [0]
        call = next(iter(p["roles"]["reward"]["calls"].values()))
        call["devices"] = [1]
        call["strategy"].update(dp=1, tp=1, pp=1)

    with pytest.raises(ConfigError, match=r"uses devices outside the role's: \[1\]"):
        validate_plan(_broken(plan, edit))


def test_load_plan_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_plan(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_plan(bad)
    bad.write_text("[]")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        load_plan(bad)
