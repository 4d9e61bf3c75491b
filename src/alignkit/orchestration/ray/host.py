"""The Ray actor that hosts one worker of a role (a PolicyWorker, a RolloutWorker, ...).

The host is generic: it builds the worker it is given, in the state a local worker would be built in
(the same RNG state, deterministic algorithms, a torch.distributed group for a sharded training role),
and then runs the worker's methods. Weight sync is its only special knowledge: it moves weights
through the object store (sync.py) instead of passing a Python iterator, or from GPU to GPU for the
vLLM engine (sync_gpu.py).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from alignkit.orchestration.ray.sync import WeightRefs, publish, receive


@dataclass(frozen=True)
class GroupSpec:
    """A worker's place in its role's torch.distributed process group."""

    rank: int
    world_size: int
    backend: str  # gloo (CPU) or nccl (GPU)
    timeout_s: float


class WorkerHost:
    def __init__(self, role: str, index: int):
        self.role, self.index = role, index
        self.worker: Any = None
        self._sender: Any = None  # TrainerSide, made on a policy worker's first GPU sync

    def __repr__(self) -> str:
        # Ray prefixes the actor's log lines and error reports with this.
        return f"{self.role} worker {self.index}"

    def address(self) -> tuple[str, int]:
        """This node's IP and a free port on it: the rendezvous of a process group whose rank 0 is here."""
        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def prepare(self, cls: type) -> None:
        """Nothing to do: unpickling `cls` imports its module (torch, transformers, ...), which is slow;
        the executor asks for it at once, while earlier roles are still being built."""

    def init(self, cls: type, args: tuple, rng: dict[str, Any], group: GroupSpec | None,
             address: tuple[str, int] | None) -> dict[str, Any]:
        """Build `cls(*args)` from the RNG state `rng`, in the process group `group` whose rank 0
        listens at `address` when the role is sharded; returns the RNG state it leaves, which the
        next role starts from, as roles built one after another in one process would."""
        import torch
        import transformers

        from alignkit.checkpoint.state import rng_state, set_rng_state

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        torch.use_deterministic_algorithms(True, warn_only=True)  # as start_run sets in the controller
        if group is not None:
            _join_group(group, *address)
        set_rng_state(rng)
        self.worker = cls(*args)
        return rng_state()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.worker, method)(*args, **kwargs)

    def apply(self, fn: Callable[[Any], Any]) -> Any:
        """`fn(worker)` here: for inspection and tests."""
        return fn(self.worker)

    def publish_weights(self, publish_here: bool, bucket_bytes: int) -> WeightRefs | None:
        """Every worker of a sharded role walks its full weights (gathering them is collective); the
        first one puts them in the object store."""
        named = self.worker.weights()
        if publish_here:
            return publish(named, bucket_bytes)
        for _ in named:
            pass
        return None

    def load_weights(self, weights: WeightRefs, timeout_s: float) -> None:
        self.worker.load_weights(receive(weights, timeout_s))

    def sender(self, method: str, *args: Any) -> Any:
        """A policy worker's side of GPU weight sync (sync_gpu.py): `TrainerSide.method(worker, *args)`."""
        if self._sender is None:
            from alignkit.orchestration.ray.sync_gpu import TrainerSide

            self._sender = TrainerSide()
        return getattr(self._sender, method)(self.worker, *args)

    def engine(self, method: str, *args: Any) -> Any:
        """A rollout worker's engine's side of GPU weight sync (the vLLM engine's methods)."""
        return getattr(self.worker.engine, method)(*args)


def _join_group(g: GroupSpec, addr: str, port: int) -> None:
    import torch.distributed as dist

    # The variables too, for libraries that read them (DeepSpeed, accelerate).
    os.environ.update(RANK=str(g.rank), WORLD_SIZE=str(g.world_size), LOCAL_RANK="0", MASTER_ADDR=addr,
                      MASTER_PORT=str(port))
    dist.init_process_group(g.backend, init_method=f"tcp://{addr}:{port}", rank=g.rank, world_size=g.world_size,
                            timeout=timedelta(seconds=g.timeout_s))
