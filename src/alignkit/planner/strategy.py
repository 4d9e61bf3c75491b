"""Device meshes (where a call runs) and parallel strategies (how it is split).

A mesh is a contiguous range of devices of one of two shapes, as in ReaLHF: a power-of-two block
inside one node, aligned to its size (1, 2, 4 or 8 devices of an 8-device node), or a run of whole
nodes. These shapes keep tensor-parallel groups on NVLink and let meshes tile the cluster, so the
search space stays small while still containing colocated, separate and mixed placements.

Inside a mesh, devices are numbered tensor-parallel fastest, then data-parallel, then pipeline
(Megatron's order): a tensor-parallel group is ``tp`` adjacent devices, hence inside one node.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignkit.planner.graph import Workload
from alignkit.planner.hardware import ClusterSpec
from alignkit.planner.models import ModelSpec

MAX_MICRO_BATCHES = 64  # more buys nothing the cost model can see and only slows the search


@dataclass(frozen=True, order=True)
class DeviceMesh:
    """Devices ``start .. start+size-1`` (global, node-major indices)."""

    start: int
    size: int

    @property
    def stop(self) -> int:
        return self.start + self.size

    @property
    def devices(self) -> range:
        return range(self.start, self.stop)

    def nodes(self, cluster: ClusterSpec) -> range:
        dpn = cluster.devices_per_node
        return range(self.start // dpn, (self.stop - 1) // dpn + 1)

    def overlaps(self, other: DeviceMesh) -> bool:
        return self.start < other.stop and other.start < self.stop

    def label(self) -> str:
        return str(self.start) if self.size == 1 else f"{self.start}-{self.stop - 1}"


@dataclass(frozen=True, order=True)
class ParallelStrategy:
    """How one call is parallelised on its mesh (dp * tp * pp == mesh size)."""

    dp: int
    tp: int
    pp: int
    zero: int = 0  # ZeRO stage of a train call (0: none); other calls keep full replicas
    micro_batches: int = 1  # per data-parallel rank: per optimizer step (train), per call
    # (inference), or generation waves (generate: sequences decoded concurrently = share / waves)
    recompute: bool = False  # activation checkpointing in a train call

    @property
    def size(self) -> int:
        return self.dp * self.tp * self.pp

    @property
    def layout(self) -> tuple[int, int, int]:
        """What decides where each weight shard lives (and so whether a weight move is needed)."""
        return (self.dp, self.tp, self.pp)

    def label(self) -> str:
        s = f"dp{self.dp} tp{self.tp} pp{self.pp}"
        if self.zero:
            s += f" z{self.zero}"
        s += f" mb{self.micro_batches}"
        if self.recompute:
            s += " rc"
        return s


def valid_mesh_sizes(cluster: ClusterSpec) -> list[int]:
    dpn = cluster.devices_per_node
    sizes = [1 << k for k in range(dpn.bit_length()) if (1 << k) <= dpn]
    sizes += [dpn * k for k in range(2, cluster.nodes + 1)]
    return sizes


def enumerate_meshes(cluster: ClusterSpec) -> list[DeviceMesh]:
    """Every valid mesh, ordered by (size, start)."""
    dpn, n = cluster.devices_per_node, cluster.n_devices
    meshes = []
    for size in valid_mesh_sizes(cluster):
        step = size if size <= dpn else dpn
        meshes += [DeviceMesh(start, size) for start in range(0, n - size + 1, step)]
    return meshes


def is_valid_mesh(mesh: DeviceMesh, cluster: ClusterSpec) -> bool:
    dpn = cluster.devices_per_node
    if mesh.start < 0 or mesh.stop > cluster.n_devices or mesh.size < 1:
        return False
    if mesh.size <= dpn:
        return mesh.size & (mesh.size - 1) == 0 and mesh.start % mesh.size == 0
    return mesh.size % dpn == 0 and mesh.start % dpn == 0


def _powers_of_two(limit: int) -> list[int]:
    return [1 << k for k in range(limit.bit_length()) if (1 << k) <= limit]


def tp_valid(tp: int, model: ModelSpec) -> bool:
    """Heads split evenly; KV heads split evenly or are replicated whole (GQA with tp > kv)."""
    return model.n_heads % tp == 0 and (model.n_kv_heads % tp == 0 or tp % model.n_kv_heads == 0)


def enumerate_layouts(size: int, model: ModelSpec, cluster: ClusterSpec) -> list[tuple[int, int, int]]:
    """(dp, tp, pp) with dp*tp*pp == size, tp inside a node, pp no deeper than the layers."""
    out = []
    for tp in _powers_of_two(min(size, cluster.devices_per_node)):
        if size % tp or not tp_valid(tp, model):
            continue
        rest = size // tp
        for pp in range(1, rest + 1):
            if rest % pp == 0 and pp <= model.n_layers:
                out.append((rest // pp, tp, pp))
    return out


def enumerate_strategies(
    kind: str, size: int, model: ModelSpec, workload: Workload, cluster: ClusterSpec
) -> list[ParallelStrategy]:
    """Every strategy for a call of ``kind`` on a mesh of ``size`` devices. Each data-parallel
    rank must get at least one sequence (per optimizer step for training)."""
    out: list[ParallelStrategy] = []
    for dp, tp, pp in enumerate_layouts(size, model, cluster):
        if kind == "train":
            per_rank = workload.n_sequences // workload.minibatches // dp
        else:
            per_rank = workload.n_sequences // dp
        if per_rank < 1:
            continue
        mbs = _powers_of_two(min(per_rank, MAX_MICRO_BATCHES))
        if kind != "train":
            out += [ParallelStrategy(dp, tp, pp, 0, mb) for mb in mbs]
            continue
        # ZeRO-2/3 with pipeline parallelism is not supported by Megatron or DeepSpeed's
        # pipeline engine; with one data-parallel rank there is nothing to shard.
        zeros = [0] if dp == 1 else ([0, 1] if pp > 1 else [0, 1, 2, 3])
        for zero in zeros:
            for mb in mbs:
                for rc in (False, True):
                    out.append(ParallelStrategy(dp, tp, pp, zero, mb, rc))
    return out
