"""FSDP2: the torch backend with the model sharded by `torch.distributed.fsdp.fully_shard` over the
workers of the process group (gloo on CPU, NCCL on GPU).

Data parallel: each worker runs `forward_backward` on its own micro-batches of the step. The losses
alignkit passes are already divided by the step's global denominator (all workers' tokens or pairs),
so the workers' gradients are SUMMED, not averaged as FSDP does by default. Metrics returned by
`forward_backward` are this worker's partial sums; combine them with `distributed.all_reduce_metrics`
(or by summing the workers' results). `step` (inherited) clips by the global gradient norm: the grads are
sharded DTensors and `clip_grad_norm_` reduces their norm over the group, so every worker returns the
same grad_norm as one process would.

Every collective call (forward, `forward_backward`, `evaluate`, `step`, `state_dict`, `full_weights`,
`trainable_weights`) must be made by every worker of the group, the same number of times.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from alignkit.backends.distributed import rank, require_process_group
from alignkit.backends.torch_local import OptimConfig, TorchBackend
from alignkit.models.weights import full_weights


def shard_model(model: torch.nn.Module, device: torch.device, offload: bool) -> list[FSDPModule]:
    """Shard `model` in place: one FSDP unit per transformer block (the classes transformers lists in
    `_no_split_modules`), the rest (embeddings, final norm, tied head) in the root unit. Returns the units.

    Parameters keep the model's dtype (no MixedPrecisionPolicy), so the sharded run does the same
    arithmetic as the torch backend. (A bf16 MixedPrecisionPolicy with fp32 reduction also runs on CPU
    with gloo in torch 2.13; CPUOffloadPolicy does not, see below.)"""
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    # On a CPU-only run everything already lives in CPU memory (and CPUOffloadPolicy's pinned memory needs
    # an accelerator), so offload only applies on GPU.
    policy = CPUOffloadPolicy() if offload and device.type != "cpu" else None
    kwargs: dict[str, Any] = {"mesh": mesh} | ({"offload_policy": policy} if policy else {})
    blocks = set(getattr(_inner(model), "_no_split_modules", None) or ())
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module, **kwargs)
    fully_shard(model, **kwargs)
    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for unit in units:
        # Sum, never average: the loss is already divided by the global denominator. Forcing SUM
        # collectives also keeps to the ops gloo has (a divide factor alone uses PREMUL_SUM on NCCL).
        unit.set_gradient_divide_factor(1.0)
        unit.set_force_sum_reduction_for_comms(True)
    return units


def _inner(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a peft wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


class FSDP2Backend(TorchBackend):
    """AdamW, cosine schedule and clipping of `TorchBackend` over a model sharded across the group."""

    def __init__(self, model: torch.nn.Module, optim: OptimConfig, device: torch.device, offload: bool = False):
        require_process_group("fsdp2")
        self.units = shard_model(model, device, offload)
        # The optimizer is built over the sharded DTensor parameters, so its state is sharded too; the
        # inherited state_dict and load_state_dict gather and slice it by parameter name.
        super().__init__(model, optim, device)

    def full_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, full tensor) of every parameter as the plain transformers model names it, LoRA merged.

        Every rank must call it and start iterating: the first item all-gathers the whole model (each
        rank then holds it unsharded until the iteration ends), and every rank receives the full
        tensors. Copy each tensor before asking for the next."""
        for unit in self.units:
            unit.unshard()
        try:
            # Unsharded, the parameters are plain tensors again; merging LoRA writes only into these
            # gathered copies, which resharding discards.
            yield from full_weights(self.model)
        finally:
            for unit in self.units:
                unit.reshard()

    def trainable_weights(self) -> dict[str, torch.Tensor]:
        """Collective. Rank 0 gets the full trainable parameters on the CPU, named as the model names them
        (what a checkpoint stores); other ranks get {}."""
        state = get_model_state_dict(self.model, options=_FULL)
        # named_parameters lists a tied weight once (the state dict has both names), as safetensors needs.
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        return {n: state[n] for n in names} if rank() == 0 else {}

    @torch.no_grad()
    def load_full_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Every rank passes the same full tensors (any subset of `trainable_weights`' names) and copies in
        its own shard; no communication."""
        params = dict(self.model.named_parameters())
        for name, full in weights.items():
            param = params[name]
            assert isinstance(param, DTensor)
            # src_data_rank=None: each rank slices its shard from its own copy instead of a broadcast.
            shard = distribute_tensor(full.to(param.device, param.dtype), param.device_mesh, param.placements,
                                      src_data_rank=None)
            param.copy_(shard)
