"""Weight sync on GPUs with the vLLM engine: from the trainers' GPUs to the engines' GPUs, never
through host memory (the object store path of sync.py stays for CPUs, the HF engine and async rollouts).

- separate placement (no rollout worker shares a bundle with a policy worker): NCCL. At start-up
  the policy's first worker and every engine worker (tensor-parallel ranks included) form one group;
  each sync, every policy worker walks its full weights (a collective under a sharded backend) and
  the first broadcasts them bucket by bucket while the engines receive.
- colocated (every rollout worker on a bundle of a policy worker): CUDA IPC. Bucket by bucket, every
  policy worker packs the next bucket on its GPU and shares a handle; every engine worker maps the one
  on its own GPU and loads it; then the policy workers free it and pack the next.

`NcclSync` and `IpcSync` are the executor's weight-sync strategies for these cases (the controller
calls `executor.sync_weights()`, whatever moves the weights).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from alignkit.errors import ConfigError
from alignkit.orchestration.ray.placement import Layout
from alignkit.rollout.buckets import BUCKET_BYTES, Slot, pack_buckets
from alignkit.rollout.engines import ENGINES


def gpu_transport(cfg: Any, layout: Layout) -> str | None:
    """'nccl', 'ipc', or None (the object store) for an online-RL config and its layout."""
    r = cfg.rollout
    # Async rollouts queue loads behind rounds in flight: the weights must be copied when sent, as
    # the object store does, not when loaded.
    if not ENGINES[r.engine].gpu_weights or cfg.ray.gpus_per_worker <= 0 or r.async_:
        return None
    policy = {s.bundle for s in layout.seats["policy"]}
    rollout = {s.bundle for s in layout.seats["rollout"]}
    if not policy & rollout:
        return "nccl"
    if rollout <= policy:
        return "ipc"
    raise ConfigError(
        f"--rollout.engine vllm: the rollout's bundles {sorted(rollout)} must all hold a policy worker (weights "
        f"over CUDA IPC) or none of the policy's bundles {sorted(policy)} (weights over NCCL)"
    )


class TrainerSide:
    """The sending side, in a policy worker's host (`WorkerHost.sender`)."""

    def __init__(self) -> None:
        self.group: Any = None  # WeightGroup, on the policy's first worker
        self.buckets: Iterator[tuple[list[Slot], torch.Tensor]] | None = None
        self.shared: torch.Tensor | None = None  # the bucket the engines are reading

    def open_group(self, worker: Any, host: str, port: int, world_size: int, timeout_s: float) -> None:
        from alignkit.rollout.gpu_transport import WeightGroup

        self.group = WeightGroup(host, port, 0, world_size, worker.device, timeout_s)

    def send(self, worker: Any, bucket_bytes: int) -> None:
        named = worker.weights()  # every worker walks it: gathering shards is collective
        if self.group is not None:
            self.group.send(named, bucket_bytes)
            return
        for _ in named:
            pass

    def ipc_open(self, worker: Any, bucket_bytes: int) -> None:
        from alignkit.rollout.gpu_transport import gpu_buffer

        self.buckets = pack_buckets(worker.weights(), bucket_bytes, gpu_buffer)

    def ipc_next(self, worker: Any) -> Any:
        """The next bucket as an IpcBucket, or None at the end; the previous one is freed."""
        from alignkit.rollout.gpu_transport import share

        self.shared = None
        slots, self.shared = next(self.buckets, (None, None))
        return None if slots is None else share(slots, self.shared)

    def ipc_close(self, worker: Any) -> None:
        if self.buckets is not None:
            self.buckets.close()  # ends full_weights' iteration: LoRA unmerged, shards resharded
        self.buckets, self.shared = None, None


class NcclSync:
    """Policy -> rollout by NCCL broadcast from the policy's first worker to every engine worker."""

    def __init__(self, policy: Any, rollout: Any, tensor_parallel_size: int, timeout_s: float):
        self.policy, self.rollout, self.tp, self.timeout_s = policy, rollout, tensor_parallel_size, timeout_s

    def connect(self) -> None:
        """Form the group: rank 0 is the policy's first worker, rollout worker w's engine takes ranks
        1 + w * tp .. (w + 1) * tp. All join at once (each waits for the others)."""
        first = self.policy.actors[0]
        host, port = self.policy.wait([first.address.remote()], "address")[0]
        world = 1 + len(self.rollout.actors) * self.tp
        sender = [first.sender.remote("open_group", host, port, world, self.timeout_s)]
        receivers = [a.engine.remote("join_weight_group", host, port, 1 + w * self.tp, world, self.timeout_s)
                     for w, a in enumerate(self.rollout.actors)]
        self.policy.wait(sender, "weight group")
        self.rollout.wait(receivers, "weight group")

    def sync(self) -> None:
        self.rollout.wake_up()  # a colocated engine that gave its memory back takes it again
        senders = [a.sender.remote("send", BUCKET_BYTES) for a in self.policy.actors]
        receivers = [a.engine.remote("receive_weights") for a in self.rollout.actors]
        self.policy.wait(senders, "weights")
        self.rollout.wait(receivers, "load_weights")


class IpcSync:
    """Policy -> rollout through CUDA IPC handles of the colocated policy workers, bucket by bucket."""

    def __init__(self, policy: Any, rollout: Any):
        self.policy, self.rollout = policy, rollout

    def connect(self) -> None:
        """Nothing to set up: handles are made per bucket."""

    def sync(self) -> None:
        self.rollout.wake_up()
        self.policy.on_all("sender", "ipc_open", BUCKET_BYTES)
        try:
            while (buckets := self.policy.on_all("sender", "ipc_next"))[0] is not None:
                self.rollout.on_all("engine", "load_shared", buckets)
        finally:
            self.policy.on_all("sender", "ipc_close")
        self.rollout.on_all("engine", "weights_loaded")
