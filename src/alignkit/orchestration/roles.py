"""The roles of an online-RL run: the units the executors place and the planner plans for."""

from __future__ import annotations

ROLE_NAMES = ("policy", "critic", "reference", "reward", "rollout")
"""Every role an online-RL run can have (a plan's and `--ray.bundles`' keys)."""
