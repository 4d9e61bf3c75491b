"""Weight sync from the training group to the rollout workers through Ray's object store.

The trainer's first worker copies its full weights (LoRA merged) into flat byte buffers of about
`BUCKET_BYTES` each as the tensors arrive, puts each buffer in the object store (`ray.put`) and hands
back only the refs. Every rollout worker fetches the buckets one by one and loads them: a numpy
buffer in the store is mapped, not copied, into each process on its node, so a weight is copied
once into the store and once into the engine, and no process holds more than a bucket extra.

`ObjectStoreSync` is the executor's weight-sync strategy on CPUs, with the HF engine and for async
rollouts (GPU to GPU with vLLM: sync_gpu.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from alignkit.rollout.buckets import BUCKET_BYTES, Slot, pack_buckets, unpack_bucket


@dataclass(frozen=True)
class Bucket:
    """What one `ray.put` holds: a flat byte buffer and the tensors in it."""

    slots: list[Slot]
    data: np.ndarray  # (bytes,) uint8


@dataclass(frozen=True)
class WeightRefs:
    """One version of the full weights in the object store: what the policy's workers publish and the
    rollout's workers load."""

    refs: list[Any] = field(default_factory=list)  # ObjectRef[Bucket], in order
    nbytes: int = 0


def _host_buffer(nbytes: int, device: torch.device) -> torch.Tensor:
    # numpy-backed, so that `ray.put` stores it without pickling; pages are touched only as filled
    return torch.from_numpy(np.empty(nbytes, dtype=np.uint8))


def pack(named: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int = BUCKET_BYTES) -> Iterator[Bucket]:
    """The weights in host buckets of about `bucket_bytes` (rollout/buckets.py lays them out)."""
    for slots, data in pack_buckets(named, bucket_bytes, _host_buffer):
        yield Bucket(slots, data.numpy())


def unpack(bucket: Bucket) -> Iterator[tuple[str, torch.Tensor]]:
    """Tensors viewing the bucket's bytes (read-only when they live in the object store: load them
    with a copy, as every engine's `load_weights` does)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        data = torch.from_numpy(bucket.data)
    yield from unpack_bucket(bucket.slots, data)


def publish(named: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int = BUCKET_BYTES) -> WeightRefs:
    """Put the weights in the object store, bucket by bucket; the caller's process owns the objects."""
    import ray

    refs, nbytes = [], 0
    for bucket in pack(named, bucket_bytes):
        refs.append(ray.put(bucket))
        nbytes += len(bucket.data)
    return WeightRefs(refs, nbytes)


def receive(weights: WeightRefs, timeout_s: float) -> Iterator[tuple[str, torch.Tensor]]:
    """The published weights, fetched one bucket at a time (each released once consumed)."""
    import ray

    for ref in weights.refs:
        yield from unpack(ray.get(ref, timeout=timeout_s))


class ObjectStoreSync:
    """Policy -> rollout through the object store: every policy worker walks its full weights (gathering
    shards is collective), the first publishes them; then every rollout worker loads them."""

    def __init__(self, policy: Any, rollout: Any, timeout_s: float):
        self.policy, self.rollout, self.timeout_s = policy, rollout, timeout_s

    def connect(self) -> None:
        """Nothing to set up."""

    def send(self) -> Any:
        """Publish the weights now and start loading them; the load is in flight (a `Pending`) behind the
        rollout workers' queued calls (async rollouts wait for it later)."""
        refs = self.policy.wait([a.publish_weights.remote(i == 0, BUCKET_BYTES) for i, a in enumerate(self.policy.actors)],
                                "publish_weights")[0]
        return self.rollout.each("load_weights", refs, self.timeout_s)

    def sync(self) -> None:
        self.send().result()
