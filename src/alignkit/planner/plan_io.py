"""Writing plan.json: the planner's choice as the placement the Ray executor takes (the schema and the
reading side: orchestration/plan_file.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from alignkit.orchestration.plan_file import PLAN_VERSION, validate_plan


def plan_to_dict(problem, choice, schedule, model_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON-ready plan of ``choice`` (one candidate per call) for ``problem``."""
    labels = model_labels or {}
    cl = problem.cluster
    roles: dict[str, dict[str, Any]] = {}
    for c, call in enumerate(problem.graph.calls):
        mesh, s = problem.mesh_of(c, choice[c]), problem.strategy_of(c, choice[c])
        role = roles.setdefault(
            call.role,
            {"model": labels.get(call.model, problem.graph.models[call.model].name), "devices": [],
             "bundles": [], "calls": {}},
        )  # fmt: skip
        role["calls"][call.name.split(".", 1)[1]] = {
            "devices": list(mesh.devices),
            "strategy": {
                "dp": s.dp, "tp": s.tp, "pp": s.pp, "zero": s.zero,
                "micro_batches": s.micro_batches, "recompute": s.recompute,
            },
            "estimated_seconds": round(float(problem.tables[c].time[choice[c]]), 6),
        }  # fmt: skip
        role["devices"] = sorted(set(role["devices"]) | set(mesh.devices))
        role["bundles"] = list(role["devices"])
    return {
        "version": PLAN_VERSION,
        "cluster": {"nodes": cl.nodes, "devices_per_node": cl.devices_per_node, "device": cl.device.name},
        "algo": problem.graph.algo,
        "estimate": {
            "seconds_per_iteration": round(schedule.makespan, 6),
            "critical_path": list(schedule.critical_path),
        },
        "roles": roles,
    }


def save_plan(plan: dict[str, Any], path: str | Path) -> None:
    """Validate, then write ``plan`` as indented JSON."""
    validate_plan(plan)
    text = json.dumps(plan, indent=2)
    # Keep lists of device indices on one line: a 128-device plan stays readable.
    text = re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]", _one_line, text)
    Path(path).write_text(text + "\n")


def _one_line(match: re.Match) -> str:
    return "[" + ", ".join(x.strip() for x in match.group(1).split(",")) + "]"
