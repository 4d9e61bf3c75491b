"""DeepSpeed ZeRO (stage 1, 2 or 3, optional CPU offload) over the workers of the process group; an
optional extra (`pip install 'alignkit[deepspeed]'`), imported only here.

The optimizer is the torch AdamW and cosine schedule of `TorchBackend`, handed to DeepSpeed as a client
optimizer, so ZeRO partitions exactly the arithmetic of the reference backend (on CPU: gloo, no compiled
ops; with offload the same AdamW steps the CPU partitions). Clipping is DeepSpeed's, by the global norm.

Data parallel: each worker runs `forward_backward` on its own micro-batches of the step. The losses
alignkit passes are already divided by the step's global denominator, so gradients must be SUMMED over
the workers; DeepSpeed averages them, so the loss is multiplied by the world size before backward.
Metrics returned by `forward_backward` are this worker's partial sums (the unscaled loss); combine them
with `distributed.all_reduce_metrics`. A step may have any number of micro-batches: DeepSpeed runs with
`managed_gradient_accumulation: false` (DeepSpeed >= 0.19.5), so our `step` is the accumulation boundary.

Every call except `load_state_dict` is collective: each worker makes it, the same number of times.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist

from alignkit.backends.base import LossFn
from alignkit.backends.distributed import rank, require_process_group, world_size
from alignkit.backends.torch_local import OptimConfig, adamw, cosine_schedule
from alignkit.errors import AlignkitError, ConfigError
from alignkit.models.weights import full_weights


def import_deepspeed():
    try:
        import deepspeed
    except ImportError as e:
        raise AlignkitError("--policy.backend deepspeed needs DeepSpeed: pip install 'alignkit[deepspeed]'") from e
    # Older releases ignore `managed_gradient_accumulation` and, at one micro-batch per DeepSpeed step,
    # silently keep only the last micro-batch's gradients under ZeRO-2/3.
    if not hasattr(deepspeed.DeepSpeedEngine, "managed_gradient_accumulation"):
        raise AlignkitError(
            f"--policy.backend deepspeed needs DeepSpeed >= 0.19.5 (found {deepspeed.__version__}): "
            "pip install -U 'alignkit[deepspeed]'"
        )
    return deepspeed


def ds_config(optim: OptimConfig, zero_stage: int, offload: bool, dtype: torch.dtype) -> dict[str, Any]:
    """The DeepSpeed config: ZeRO `zero_stage`, clipping, and DeepSpeed's mixed precision when the model
    is bf16 or fp16 (fp32 master weights in the optimizer, where the torch and fsdp2 backends step the
    parameters in their own dtype)."""
    zero: dict[str, Any] = {"stage": zero_stage}
    if offload:
        zero["offload_optimizer"] = {"device": "cpu"}
        if zero_stage == 3:
            zero["offload_param"] = {"device": "cpu"}
    return {
        # The caller owns the accumulation boundary: `backward` only accumulates (any number of
        # micro-batches), `step` reduces and updates. The batch sizes are then only bookkeeping.
        "managed_gradient_accumulation": False,
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": max(optim.max_grad_norm, 0.0),
        "zero_optimization": zero,
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": dtype == torch.float16},
        # The client optimizer is torch AdamW; with offload it steps the CPU partitions (no compiled op).
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 1 << 30,
    }


def _cpu(obj: Any) -> Any:
    """`obj` with every tensor in its dicts, lists and tuples moved to the CPU (so rank 0 gathers the
    partitions into host memory, not onto its GPU)."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_cpu(v) for v in obj)
    return obj


class DeepSpeedBackend:
    """A DeepSpeed engine around the model; `self.model` stays the plain (hooked) module."""

    def __init__(self, model: torch.nn.Module, optim: OptimConfig, device: torch.device, zero_stage: int = 2,
                 offload: bool = False):
        if zero_stage not in (1, 2, 3):
            raise ConfigError(f"--policy.zero_stage {zero_stage}: choose 1, 2 or 3")
        deepspeed = import_deepspeed()
        require_process_group("deepspeed")
        # DeepSpeed reads its device from LOCAL_RANK, which only its own launcher and torchrun set; a Ray
        # actor sees just its own GPU.
        os.environ.setdefault("LOCAL_RANK", str(device.index or 0))
        self.model = model
        self.device = device
        self.zero_stage = zero_stage
        self.optimizer = adamw(model, optim)
        self.scheduler = cosine_schedule(self.optimizer, optim)
        dtype = next(model.parameters()).dtype
        # DeepSpeed steps the scheduler inside engine.step(), after the optimizer, as TorchBackend does.
        self.engine, *_ = deepspeed.initialize(
            model=model, optimizer=self.optimizer, lr_scheduler=self.scheduler,
            config=ds_config(optim, zero_stage, offload, dtype),
        )

    def forward_backward(self, batch: Any, loss_fn: LossFn) -> dict[str, float]:
        self.engine.train()
        # The engine, not the module: its forward registers the hooks ZeRO's backward relies on.
        loss, metrics = loss_fn(self.engine, batch)
        if not torch.isfinite(loss):
            raise AlignkitError(f"the loss is {float(loss)}; lower --train.lr or check the data")
        # DeepSpeed averages gradients over the workers; the loss is a share of a global sum.
        self.engine.backward(loss * world_size())
        return {k: float(v) for k, v in metrics.items()} | {"loss": float(loss.detach())}

    def step(self) -> dict[str, float]:
        """Clip by the global norm, step AdamW and the schedule; grad_norm is the pre-clip global norm."""
        lr = self.scheduler.get_last_lr()[0]
        self.engine.step()
        return {"grad_norm": float(self.engine.get_global_grad_norm()), "lr": lr}

    @torch.no_grad()
    def evaluate(self, batch: Any, loss_fn: LossFn) -> dict[str, float]:
        self.engine.eval()
        loss, metrics = loss_fn(self.engine, batch)
        return {k: float(v) for k, v in metrics.items()} | {"loss": float(loss)}

    def state_dict(self) -> dict[str, Any]:
        """Collective. Rank 0 gets every worker's ZeRO optimizer partition (with its fp32 master
        weights) and the scheduler; other ranks get {}. Resume needs the same worker count and stage."""
        parts: list[Any] | None = [None] * world_size() if rank() == 0 else None
        dist.gather_object(_cpu(self.engine.optimizer.state_dict()), parts, dst=0)
        if parts is None:
            return {}
        return {"zero_stage": self.zero_stage, "zero": parts, "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Every rank passes the same state (each reads the checkpoint) and takes its own partition."""
        saved = (state["zero_stage"], len(state["zero"]))
        if saved != (self.zero_stage, world_size()):
            raise AlignkitError(
                f"this checkpoint was saved with ZeRO stage {saved[0]} on {saved[1]} workers; resume with the same "
                f"(now stage {self.zero_stage} on {world_size()})"
            )
        self.engine.optimizer.load_state_dict(state["zero"], load_from_fp32_weights=True)
        self.scheduler.load_state_dict(state["scheduler"])

    def _gathered(self, write: bool = False) -> contextlib.AbstractContextManager:
        """Under ZeRO-3 the parameters are partitioned: gather them whole for the duration (with `write`,
        rank 0's values are partitioned back when it ends). Stages 1 and 2 keep whole parameters."""
        if self.zero_stage != 3:
            return contextlib.nullcontext()
        params = list(self.model.parameters())
        return import_deepspeed().zero.GatheredParameters(params, modifier_rank=0 if write else None)

    def full_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, full tensor) of every parameter as the plain transformers model names it, LoRA merged.
        Every rank must call it and iterate to the end (ZeRO-3 gathers the whole model at the start);
        every rank receives the full tensors. Copy each tensor before asking for the next."""
        with self._gathered():
            yield from full_weights(self.model)

    def trainable_weights(self) -> dict[str, torch.Tensor]:
        """Collective. Rank 0 gets the full trainable parameters on the CPU, named as the model names them
        (what a checkpoint stores); other ranks get {}."""
        with self._gathered():
            if rank() != 0:
                return {}
            return {n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def load_full_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Collective. Every rank passes the same full tensors (any subset of `trainable_weights`' names);
        ZeRO's fp32 master copies are refreshed from them."""
        params = dict(self.model.named_parameters())
        with self._gathered(write=True):
            for name, tensor in weights.items():
                params[name].copy_(tensor)
        self.engine.optimizer.refresh_fp32_params()
