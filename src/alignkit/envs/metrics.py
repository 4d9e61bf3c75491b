"""Multi-turn rollout metrics, declared with their reductions (algos/metric.py): the metrics of several
rounds, or of several rollout workers, combine exactly with `merge_all` and are reduced once.

Means per trajectory of turns and tokens count the trajectories that did not fail; times, tool calls
and the truncation and failure rates count every trajectory; the tool-call success rate counts calls
(a round without calls adds nothing to it).
"""

from __future__ import annotations

from typing import get_args

from alignkit.algos.metric import Metric, maximum, total
from alignkit.envs.trajectory import Trajectory, Truncation

TRUNCATIONS = [r for r in get_args(Truncation) if r]


def env_metrics(trajectories: list[Trajectory]) -> dict[str, Metric]:
    """`env/...` metrics of one round's trajectories, failed ones included."""
    ok = [t for t in trajectories if not t.failed]
    n, k = len(trajectories), len(ok)
    calls_ok = sum(t.tool_calls_ok for t in trajectories)
    calls = calls_ok + sum(t.tool_calls_failed for t in trajectories)
    out = {
        "env/trajectories": total(n),
        "env/failed": total(n - k),
        "env/failed_rate": Metric("mean", n - k, n),
        "env/turns_mean": Metric("mean", sum(len(t.turns) for t in ok), k),
        "env/turns_max": maximum(max((len(t.turns) for t in ok), default=0), k),
        "env/model_tokens_mean": Metric("mean", sum(t.model_tokens for t in ok), k),
        "env/env_tokens_mean": Metric("mean", sum(t.env_tokens for t in ok), k),
        "env/env_time_s_mean": Metric("mean", sum(t.env_time_s for t in trajectories), n),
        "env/tool_time_s_mean": Metric("mean", sum(t.tool_time_s for t in trajectories), n),
        "env/tool_calls_mean": Metric("mean", calls, n),
        "env/truncated_rate": Metric("mean", sum(t.truncated for t in trajectories), n),
    }
    for reason in TRUNCATIONS:  # every reason, so that rounds without one still weigh in
        out[f"env/truncated_rate/{reason}"] = Metric("mean", sum(t.truncation == reason for t in trajectories), n)
    if calls:
        out["env/tool_success_rate"] = Metric("mean", calls_ok, calls)
    return out
