"""Moving weight buckets (rollout/buckets.py) from the trainer's GPU to a vLLM engine's GPUs.

- CUDA IPC, when trainer and engine share a GPU (colocated): the trainer packs a bucket on its GPU
  and hands out a handle to that memory; the engine's worker maps it and loads from it, no copy
  through the host. The trainer must keep the bucket alive until the engine has loaded it.
- NCCL broadcast, when they do not (separate placement): training rank 0 and every engine worker
  form one group at start-up; per bucket, rank 0 publishes the layout through the group's store and
  broadcasts the bytes.

The group is vLLM's StatelessProcessGroup + PyNcclCommunicator: unlike torch.distributed it does not
touch the global process group, which the trainer (FSDP) and vLLM (tensor parallel) each own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from alignkit.errors import AlignkitError
from alignkit.rollout.buckets import Slot, pack_buckets


def gpu_buffer(nbytes: int, device: torch.device) -> torch.Tensor:
    return torch.empty(nbytes, dtype=torch.uint8, device=device)


def device_uuid(device: torch.device) -> str:
    """The GPU's identity across processes (device indices differ with CUDA_VISIBLE_DEVICES)."""
    return str(torch.cuda.get_device_properties(device).uuid)


@dataclass(frozen=True)
class IpcBucket:
    """A bucket on a trainer's GPU, shareable with another process on the same GPU."""

    slots: list[Slot]
    handle: tuple[Any, tuple]  # torch's (rebuild function, arguments) of the CUDA buffer
    device_uuid: str


# Position of the device index among the arguments of torch's rebuild_cuda_tensor.
_DEVICE_ARG = 6


def share(slots: list[Slot], data: torch.Tensor) -> IpcBucket:
    """An IPC handle to `data` (a CUDA bucket); its bytes must be written before the handle is used."""
    from torch.multiprocessing.reductions import reduce_tensor

    torch.cuda.current_stream(data.device).synchronize()  # the copies into the bucket are done
    return IpcBucket(slots, reduce_tensor(data), device_uuid(data.device))


def pick(buckets: list[IpcBucket], device: torch.device) -> IpcBucket:
    """The bucket that lies on `device` (each colocated trainer worker shares its own GPU's), else
    the first: a GPU this process sees too, read across devices."""
    uuid = device_uuid(device)
    return next((b for b in buckets if b.device_uuid == uuid), buckets[0])


def open_shared(bucket: IpcBucket) -> torch.Tensor:
    """Map a shared bucket into this process: the device index in the handle is the sender's, so it
    is replaced with this process's index of the same GPU."""
    rebuild, args = bucket.handle
    local = [i for i in range(torch.cuda.device_count()) if device_uuid(torch.device("cuda", i)) == bucket.device_uuid]
    if not local:
        raise AlignkitError(f"weight sync over CUDA IPC: GPU {bucket.device_uuid} is not visible to this process")
    args = list(args)
    args[_DEVICE_ARG] = local[0]
    return rebuild(*args)


class WeightGroup:
    """One side of the NCCL group between training rank 0 (group rank 0) and the engine workers."""

    def __init__(self, host: str, port: int, rank: int, world_size: int, device: torch.device, timeout_s: float):
        """Collective: every rank of the group calls it at the same time (rank 0 listens at host:port)."""
        from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
        from vllm.distributed.utils import StatelessProcessGroup

        # PyNccl compares tensors' devices with this one: "cuda" must be spelled with its index
        self.rank, self.device = rank, torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        self.group = StatelessProcessGroup.create(host, port, rank, world_size, store_timeout=int(timeout_s))
        self.comm = PyNcclCommunicator(self.group, device=self.device)

    def send(self, named: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int) -> int:
        """Rank 0: broadcast the weights bucket by bucket, then the end mark; returns the bytes sent."""
        sent = 0
        for slots, data in pack_buckets(named, bucket_bytes, gpu_buffer):
            self.group.broadcast_obj((slots, len(data)), src=0)
            self.comm.broadcast(data, src=0)
            sent += len(data)
        self.group.broadcast_obj(None, src=0)
        torch.cuda.current_stream(self.device).synchronize()
        return sent

    def receive(self) -> Iterator[tuple[list[Slot], torch.Tensor]]:
        """Other ranks: each bucket as it arrives, until rank 0's end mark."""
        while (layout := self.group.broadcast_obj(None, src=0)) is not None:
            slots, nbytes = layout
            data = gpu_buffer(nbytes, self.device)
            self.comm.broadcast(data, src=0)
            yield slots, data
