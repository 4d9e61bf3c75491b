"""Multi-turn rollout metrics, kept as sums so that the statistics of several rollout workers merge
exactly (add every field; `turns_max` by max) and are turned into rates and means once.

Means per trajectory of turns and tokens count the trajectories that did not fail; times, tool calls
and the truncation and failure rates count every trajectory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from alignkit.envs.trajectory import Trajectory


@dataclass(frozen=True)
class EnvStats:
    trajectories: int = 0
    failed: int = 0
    truncated: dict[str, int] = field(default_factory=dict)  # truncation reason -> count
    turns: int = 0  # of the trajectories that did not fail
    turns_max: int = 0
    model_tokens: int = 0  # sampled, of the trajectories that did not fail
    env_tokens: int = 0  # added by the environment and the template after the prompt, same
    env_time_s: float = 0.0
    tool_time_s: float = 0.0
    tool_calls_ok: int = 0
    tool_calls_failed: int = 0

    @classmethod
    def of(cls, trajectories: list[Trajectory]) -> EnvStats:
        ok = [t for t in trajectories if not t.failed]
        truncated: dict[str, int] = {}
        for t in trajectories:
            if t.truncated:
                truncated[t.truncation] = truncated.get(t.truncation, 0) + 1
        return cls(
            trajectories=len(trajectories),
            failed=len(trajectories) - len(ok),
            truncated=truncated,
            turns=sum(len(t.turns) for t in ok),
            turns_max=max((len(t.turns) for t in ok), default=0),
            model_tokens=sum(t.model_tokens for t in ok),
            env_tokens=sum(t.env_tokens for t in ok),
            env_time_s=sum(t.env_time_s for t in trajectories),
            tool_time_s=sum(t.tool_time_s for t in trajectories),
            tool_calls_ok=sum(t.tool_calls_ok for t in trajectories),
            tool_calls_failed=sum(t.tool_calls_failed for t in trajectories),
        )

    def merge(self, other: EnvStats) -> EnvStats:
        sums = {f.name: getattr(self, f.name) + getattr(other, f.name)
                for f in dataclasses.fields(self) if f.name not in ("truncated", "turns_max")}
        truncated = dict(self.truncated)
        for reason, count in other.truncated.items():
            truncated[reason] = truncated.get(reason, 0) + count
        return EnvStats(**sums, truncated=truncated, turns_max=max(self.turns_max, other.turns_max))

    def metrics(self) -> dict[str, float]:
        """`env/...` metrics; tool_success_rate only when some tool was called."""
        n = max(self.trajectories, 1)
        ok = max(self.trajectories - self.failed, 1)
        calls = self.tool_calls_ok + self.tool_calls_failed
        out = {
            "env/turns_mean": self.turns / ok,
            "env/turns_max": float(self.turns_max),
            "env/model_tokens_mean": self.model_tokens / ok,
            "env/env_tokens_mean": self.env_tokens / ok,
            "env/env_time_s_mean": self.env_time_s / n,
            "env/tool_time_s_mean": self.tool_time_s / n,
            "env/tool_calls_mean": calls / n,
            "env/truncated_rate": sum(self.truncated.values()) / n,
            "env/failed_rate": self.failed / n,
        }
        out |= {f"env/truncated_rate/{reason}": count / n for reason, count in sorted(self.truncated.items())}
        if calls:
            out["env/tool_success_rate"] = self.tool_calls_ok / calls
        return out
