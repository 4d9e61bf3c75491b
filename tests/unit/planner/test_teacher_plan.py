"""The distillation teacher in the planner: a forward-only node of its own model in the dataflow graph,
costed like any inference call, placed in the plan and in plan.json (`alignkit plan --teacher 7b`)."""

from __future__ import annotations

import pytest

from alignkit.orchestration.plan_file import load_plan
from alignkit.planner.command import main
from alignkit.planner.cost import call_cost
from alignkit.planner.graph import Workload, build_graph
from alignkit.planner.hardware import ClusterSpec, get_device
from alignkit.planner.models import NAMED_MODELS
from alignkit.planner.planning import run_planner

WL = Workload(batch=32, prompt_len=128, gen_len=128, group_size=4)


def test_the_teacher_is_an_inference_node_that_training_waits_for():
    g = build_graph("grpo", NAMED_MODELS["1b"], WL, teacher=NAMED_MODELS["7b"])
    assert [c.name for c in g.calls] == ["rollout.generate", "teacher.logprobs", "policy.logprobs", "policy.train"]
    call = g.calls[g.index("teacher.logprobs")]
    assert (call.role, call.model, call.kind, call.deps) == ("teacher", "teacher", "inference", ("rollout.generate",))
    assert "teacher.logprobs" in g.calls[g.index("policy.train")].deps
    assert g.models["teacher"] is NAMED_MODELS["7b"] and g.models["teacher"].lm_head  # log-probs need the LM head


def test_the_teacher_call_is_costed_and_scheduled():
    cluster = ClusterSpec(1, 4, get_device("h100"))
    alone = run_planner(build_graph("grpo", NAMED_MODELS["1b"], WL), cluster, steps=300)
    g = build_graph("grpo", NAMED_MODELS["1b"], WL, teacher=NAMED_MODELS["7b"])
    out = run_planner(g, cluster, steps=300)
    c = g.index("teacher.logprobs")
    cand = out.result.choice[c]
    strategy = out.problem.strategy_of(c, cand)
    # the candidate's time is the cost model's for a 7b forward over the step's sequences with that strategy
    expected = call_cost("inference", NAMED_MODELS["7b"], WL, strategy, cluster, out.problem.eff).time_s
    assert out.problem.tables[c].time[cand] == pytest.approx(expected)
    event = next(e for e in out.schedule.events if e.name == "teacher.logprobs")
    assert event.end - event.start == pytest.approx(expected)
    # a 7b forward over 128 sequences of 256 tokens is not free: the step takes longer than without it
    assert expected > 0 and out.schedule.makespan > alone.schedule.makespan


def test_plan_command_with_a_teacher(tmp_path, capsys):
    out_file = tmp_path / "plan.json"
    assert main(["--algo", "grpo", "--actor", "1b", "--teacher", "7b", "--ref", "none", "--reward", "none",
                 "--devices", "1x4", "--batch", "32", "--prompt-len", "128", "--gen-len", "128", "--steps", "50",
                 "--output", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "models: policy 1b (1.10B), teacher 7b (6.74B)" in out
    row = next(line for line in out.splitlines() if line.startswith("teacher.logprobs"))
    plan = load_plan(out_file)
    assert set(plan["roles"]) == {"policy", "rollout", "teacher"}
    teacher = plan["roles"]["teacher"]
    assert teacher["model"] == "7b" and teacher["devices"] and set(teacher["calls"]) == {"logprobs"}
    assert row.split()[1] == ",".join(_ranges(teacher["calls"]["logprobs"]["devices"]))
    # the table's "time s" column and plan.json give the same (positive) cost
    seconds = teacher["calls"]["logprobs"]["estimated_seconds"]
    assert seconds > 0 and float(row.split()[-2]) == pytest.approx(seconds, abs=0.006)


def _ranges(devices):
    """Device indices as the table prints a mesh: "0-3"."""
    return [f"{devices[0]}-{devices[-1]}" if len(devices) > 1 else str(devices[0])]
