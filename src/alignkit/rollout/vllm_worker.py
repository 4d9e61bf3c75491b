"""The side of weight sync that runs inside vLLM's worker processes.

vLLM mixes this class into every worker of an engine (`LLM(worker_extension_cls=RECEIVER)`), and
the engine process calls its methods through `LLM.collective_rpc`: weights reach the model without
leaving the worker's GPU, and a tensor-parallel engine's workers each load the full tensors, which
the model's `load_weights` shards. Names are the trainer's (Hugging Face names, LoRA merged by
models/weights.py); vLLM's `load_weights` takes those and maps them to its fused layers
(q/k/v -> qkv_proj, gate/up -> gate_up_proj) itself.

Layouts and IPC handles arrive pickled: vLLM's RPC encodes arguments with msgpack, which would turn
dataclasses into dicts and refuses functions (an IPC handle holds torch's rebuild function) unless
VLLM_ALLOW_INSECURE_SERIALIZATION is set. Both ends are this run's own processes.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable

import torch

from alignkit.rollout.buckets import unpack_bucket
from alignkit.rollout.gpu_transport import WeightGroup, open_shared, pick

RECEIVER = "alignkit.rollout.vllm_worker.WeightReceiver"


class WeightReceiver:
    """Methods added to a vLLM worker; `self` is the worker (model_runner, device, rank are vLLM's).
    Every name starts with alignkit_ so that none shadows one of the worker's."""

    def alignkit_load_host(self, slots: bytes, data: torch.Tensor) -> None:
        """A bucket sent through the engine's own RPC (host bytes: the object-store path);
        `slots`: its pickled list[Slot]."""
        self._alignkit_load(unpack_bucket(pickle.loads(slots), data.to(self.device)))

    def alignkit_load_ipc(self, buckets: bytes) -> None:
        """A bucket on a colocated trainer's GPU (`buckets`: a pickled list[IpcBucket], one per
        trainer GPU): mapped, loaded, and let go before returning, since the trainer frees it once
        this call is over."""
        bucket = pick(pickle.loads(buckets), self.device)
        data = open_shared(bucket)
        self._alignkit_load(unpack_bucket(bucket.slots, data))
        torch.cuda.synchronize(self.device)
        del data

    def alignkit_join(self, host: str, port: int, rank_offset: int, world_size: int, timeout_s: float) -> None:
        """Join the NCCL group of weight sync as rank `rank_offset` + this worker's rank in its engine."""
        self._alignkit_group = WeightGroup(host, port, rank_offset + self.rank, world_size, self.device, timeout_s)

    def alignkit_receive(self) -> None:
        """Receive one broadcast of the weights (training rank 0 sends at the same time)."""
        for slots, data in self._alignkit_group.receive():
            self._alignkit_load(unpack_bucket(slots, data))

    def _alignkit_load(self, named: Iterable[tuple[str, torch.Tensor]]) -> None:
        self.model_runner.model.load_weights(weights=named)
