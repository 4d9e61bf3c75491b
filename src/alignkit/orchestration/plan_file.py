"""plan.json: the placement the Ray executor takes (``--ray.plan``), and its schema check.

:func:`validate_plan` is the contract between the planner, which writes plans (planner/plan_io.py),
and the Ray executor, which takes one (:func:`plan_bundles`). It lives with the executor, the layer
below the planner. A plan looks like::

    {
      "version": 1,
      "cluster": {"nodes": 8, "devices_per_node": 8, "device": "h100"},
      "algo": "ppo",                                    # optional
      "estimate": {"seconds_per_iteration": 13.4,       # optional, informative
                   "critical_path": ["rollout.generate", ...]},
      "roles": {
        "policy": {
          "model": "7b",
          "devices": [0, 1, ..., 63],       # global device indices, node-major
          "bundles": [0, 1, ..., 63],       # placement-group bundle indices (one device each)
          "calls": {
            "train": {"devices": [0, ..., 63],
                      "strategy": {"dp": 32, "tp": 2, "pp": 1, "zero": 2,
                                   "micro_batches": 1, "recompute": false},
                      "estimated_seconds": 1.7}
          }
        },
        "rollout": {...}, "critic": {...}, "reference": {...}, "reward": {...}
      }
    }

Bundle ``i`` of the placement group (one device per bundle, node-major) is device ``i``; the two
lists are kept separate so an executor with another bundle order can map them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit.config.json_file import read_json
from alignkit.errors import ConfigError
from alignkit.orchestration.roles import ROLE_NAMES

PLAN_VERSION = 1
STRATEGY_FIELDS = ("dp", "tp", "pp", "zero", "micro_batches", "recompute")


def load_plan(path: str | Path) -> dict[str, Any]:
    """Read and validate a plan file."""
    plan = read_json(path, "plan file")
    validate_plan(plan, source=str(Path(path)))
    return plan


def plan_bundles(path: str | Path) -> dict[str, list[int]]:
    """Role -> placement-group bundle indices of the plan file at ``path``: what the Ray executor
    takes (``--ray.plan``)."""
    return {role: list(r["bundles"]) for role, r in load_plan(path)["roles"].items()}


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def validate_plan(plan: Any, source: str = "plan") -> None:
    """Check ``plan`` against the schema; raise ConfigError listing every problem with its path
    (``roles.policy.calls.train.strategy.tp: ...``)."""
    errors: list[str] = []

    def err(path: str, msg: str) -> None:
        errors.append(f"{path}: {msg}")

    if not isinstance(plan, dict):
        raise ConfigError(f"{source}: must be a JSON object, got {type(plan).__name__}")
    if plan.get("version") != PLAN_VERSION:
        err("version", f"must be {PLAN_VERSION}, got {plan.get('version')!r}")
    n_devices = None
    cluster = plan.get("cluster")
    if not isinstance(cluster, dict):
        err("cluster", "missing or not an object")
    else:
        for key in ("nodes", "devices_per_node"):
            if not _is_int(cluster.get(key)) or cluster[key] < 1:
                err(f"cluster.{key}", f"must be a positive integer, got {cluster.get(key)!r}")
        if not isinstance(cluster.get("device"), str) or not cluster.get("device"):
            err("cluster.device", f"must be a device kind name, got {cluster.get('device')!r}")
        if _is_int(cluster.get("nodes")) and _is_int(cluster.get("devices_per_node")):
            n_devices = cluster["nodes"] * cluster["devices_per_node"]
    roles = plan.get("roles")
    if not isinstance(roles, dict) or not roles:
        err("roles", f"must be a non-empty object with keys among {list(ROLE_NAMES)}")
        roles = {}
    for name, role in roles.items():
        _check_role(f"roles.{name}", name, role, n_devices, err)
    if "policy" in roles and "rollout" not in roles:
        err("roles", "a plan with a policy needs a rollout role (who generates?)")
    if errors:
        raise ConfigError(f"{source} fails the plan schema:\n  " + "\n  ".join(errors))


def _check_devices(path: str, devices: Any, n_devices: int | None, err) -> list[int] | None:
    if not isinstance(devices, list) or not devices or not all(_is_int(d) for d in devices):
        err(path, f"must be a non-empty list of device indices, got {devices!r}")
        return None
    if len(set(devices)) != len(devices):
        err(path, "lists a device more than once")
    if n_devices is not None and any(d < 0 or d >= n_devices for d in devices):
        err(path, f"indices must be in 0..{n_devices - 1}")
    return devices


def _check_role(path: str, name: str, role: Any, n_devices: int | None, err) -> None:
    if name not in ROLE_NAMES:
        err(path, f"unknown role {name!r}; valid roles: {list(ROLE_NAMES)}")
    if not isinstance(role, dict):
        err(path, "must be an object")
        return
    if not isinstance(role.get("model"), str):
        err(f"{path}.model", f"must be a string, got {role.get('model')!r}")
    devices = _check_devices(f"{path}.devices", role.get("devices"), n_devices, err)
    bundles = _check_devices(f"{path}.bundles", role.get("bundles"), n_devices, err)
    if devices is not None and bundles is not None and len(bundles) != len(devices):
        err(f"{path}.bundles", f"must have one bundle per device ({len(devices)}), got {len(bundles)}")
    calls = role.get("calls")
    if not isinstance(calls, dict) or not calls:
        err(f"{path}.calls", "must be a non-empty object of call name -> placement")
        return
    for cname, call in calls.items():
        cpath = f"{path}.calls.{cname}"
        if not isinstance(call, dict):
            err(cpath, "must be an object")
            continue
        cdev = _check_devices(f"{cpath}.devices", call.get("devices"), n_devices, err)
        if cdev is not None and devices is not None and not set(cdev) <= set(devices):
            err(f"{cpath}.devices", f"uses devices outside the role's: {sorted(set(cdev) - set(devices))}")
        strategy = call.get("strategy")
        if not isinstance(strategy, dict):
            err(f"{cpath}.strategy", "missing or not an object")
            continue
        _check_strategy(f"{cpath}.strategy", strategy, cdev, err)
        secs = call.get("estimated_seconds")
        if secs is not None and (not isinstance(secs, int | float) or isinstance(secs, bool) or secs < 0):
            err(f"{cpath}.estimated_seconds", f"must be a non-negative number, got {secs!r}")


def _check_strategy(path: str, s: dict, devices: list[int] | None, err) -> None:
    missing = [k for k in STRATEGY_FIELDS if k not in s]
    if missing:
        err(path, f"missing field(s) {missing}")
    unknown = sorted(set(s) - set(STRATEGY_FIELDS))
    if unknown:
        err(path, f"unknown field(s) {unknown}; valid: {list(STRATEGY_FIELDS)}")
    for key in ("dp", "tp", "pp", "micro_batches"):
        if key in s and (not _is_int(s[key]) or s[key] < 1):
            err(f"{path}.{key}", f"must be a positive integer, got {s[key]!r}")
    if "zero" in s and (not _is_int(s["zero"]) or s["zero"] not in (0, 1, 2, 3)):
        err(f"{path}.zero", f"must be 0, 1, 2 or 3, got {s['zero']!r}")
    if "recompute" in s and not isinstance(s["recompute"], bool):
        err(f"{path}.recompute", f"must be true or false, got {s['recompute']!r}")
    if devices is not None and all(_is_int(s.get(k)) for k in ("dp", "tp", "pp")):
        product = s["dp"] * s["tp"] * s["pp"]
        if product != len(devices):
            err(path, f"dp*tp*pp = {product} but the call has {len(devices)} devices")
