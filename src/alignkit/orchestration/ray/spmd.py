"""A supervised command (sft, rm, dpo, kto) on Ray: one actor per worker of `--policy.num_workers`, all in
one torch.distributed process group when the backend is sharded, each running the same trainer function
with its rank (SPMD, data parallel: trainers/supervised/loop.py splits the data).

The actors are the Ray executor's: its placement (`--ray.*`), its start-up of the process group (gloo on
CPU, NCCL on GPU, `--ray.call_timeout_s` as the collective timeout), its error reports naming the worker.
The trained model is the role "policy", whose backend `--policy.backend` picks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.checkpoint.state import list_checkpoints
from alignkit.orchestration.ray.executor import RayExecutor
from alignkit.orchestration.roles import trained_role
from alignkit.runtime.signals import Stopped, graceful_stop, requested

Train = Callable[[Any], dict[str, float]]


@dataclass
class Replica:
    """One worker of the job: `train(cfg)` in its actor, in the process group the actor joined."""

    train: Train
    cfg: Any

    def run(self) -> dict[str, float]:
        return self.train(self.cfg)


def newest_checkpoint(output_dir: str) -> Path | None:
    found = list_checkpoints(Path(output_dir) / "checkpoints")
    return found[-1] if found else None


def run_spmd(cfg: Any, train: Train) -> dict[str, float]:
    """`train(cfg)` on every worker; rank 0's result (every rank returns the same, summed metrics)."""
    executor = RayExecutor(cfg, trained_role(cfg.policy.num_workers))
    try:
        # The workers never see a signal sent to this process: it writes a stop file they check at each
        # step boundary (runtime/signals.py); they save a checkpoint and stop.
        with graceful_stop(cfg.output_dir):
            try:
                group = executor.create("policy", Replica, train, cfg)
                return group.run_all("run")[0]
            except Exception:
                if (signum := requested()) is None:
                    raise
        raise Stopped(signum, newest_checkpoint(cfg.output_dir))
    finally:
        executor.shutdown()  # the workers' processes, even when one failed
