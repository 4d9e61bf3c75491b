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

from alignkit.backends.base import LossFn
from alignkit.backends.distributed import rank, require_process_group, world_size
from alignkit.backends.hyper import configured_hyperparameters
from alignkit.backends.torch_local import OptimConfig, adamw, cosine_schedule, loss_metrics
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


# The AdamW state of each parameter besides its step count.
_MOMENTS = ("exp_avg", "exp_avg_sq")


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
        # ZeRO replaces each param group's parameters by flat partitions; a checkpoint names them.
        names = {p: n for n, p in model.named_parameters()}
        self.group_names = [[names[p] for p in g["params"]] for g in self.optimizer.param_groups]
        dtype = next(model.parameters()).dtype
        self.mixed_precision = dtype != torch.float32
        # DeepSpeed steps the scheduler inside engine.step(), after the optimizer, as TorchBackend does.
        self.engine, *_ = deepspeed.initialize(
            model=model, optimizer=self.optimizer, lr_scheduler=self.scheduler,
            config=ds_config(optim, zero_stage, offload, dtype),
        )
        self._init_optimizer_state()

    def forward_backward(self, batch: Any, loss_fn: LossFn) -> dict[str, float]:
        self.engine.train()
        # The engine, not the module: its forward registers the hooks ZeRO's backward relies on.
        loss, metrics = loss_fn(self.engine, batch)
        if not torch.isfinite(loss):
            raise AlignkitError(f"the loss is {float(loss)}; lower --train.lr or check the data")
        # DeepSpeed averages gradients over the workers; the loss is a share of a global sum.
        self.engine.backward(loss * world_size())
        return loss_metrics(loss, metrics)

    def step(self) -> dict[str, float]:
        """Clip by the global norm, step AdamW and the schedule; grad_norm is the pre-clip global norm."""
        lr = self.scheduler.get_last_lr()[0]
        self.engine.step()
        return {"grad_norm": float(self.engine.get_global_grad_norm()), "lr": lr}

    @torch.no_grad()
    def evaluate(self, batch: Any, loss_fn: LossFn) -> dict[str, float]:
        self.engine.eval()
        loss, metrics = loss_fn(self.engine, batch)
        return loss_metrics(loss, metrics)

    def _partitions(self) -> list[torch.Tensor]:
        """This worker's flat fp32 partitions, which AdamW steps (one per param group)."""
        zero = self.engine.optimizer
        return zero.fp32_partitioned_groups_flat if self.zero_stage == 3 else zero.single_partition_of_fp32_groups

    def _init_optimizer_state(self) -> None:
        """AdamW's state, as its first step would create it, on ZeRO's flat partitions, linked to each
        parameter's slice: `state_dict` and `load_state_dict` read and write it through those slices.
        Left to the first step, ZeRO-1/2 link the slices after the first param group's step (DeepSpeed
        0.19), before the other groups have any state, and those groups' parameters never get theirs."""
        for flat in self._partitions():
            zeros = {k: torch.zeros_like(flat) for k in _MOMENTS}
            self.optimizer.state[flat] = {"step": torch.tensor(0.0, dtype=torch.float32)} | zeros
        if self.zero_stage < 3:  # ZeRO-3 reads each parameter's slice from the state itself
            self.engine.optimizer._lazy_init_hp_params_optimizer_state()

    def _trained(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def state_dict(self) -> dict[str, Any]:
        """Collective. The backend-neutral state (see `base.TrainBackend.state_dict`) on rank 0, {} on other
        ranks: each parameter's AdamW moments gathered whole from the ZeRO partitions and, under bf16 or
        fp16, its fp32 master weights under "master" (which only this backend reads: the others step the
        weights in their own dtype)."""
        utils = import_deepspeed().utils
        step = self.optimizer.state[self._partitions()[0]]["step"]  # every partition steps together
        state, master = {}, {}
        for name, param in self._trained().items():
            moments = {k: utils.safe_get_full_optimizer_state(param, k).cpu() for k in _MOMENTS}
            state[name] = {"step": step.clone()} | moments
            if self.mixed_precision:
                master[name] = utils.safe_get_full_fp32_param(param).cpu()
        if rank() != 0:
            return {}
        groups = [{k: v for k, v in g.items() if k != "params"} | {"params": names}
                  for g, names in zip(self.optimizer.param_groups, self.group_names, strict=True)]
        out = {"optimizer": {"state": state, "param_groups": groups}, "scheduler": self.scheduler.state_dict()}
        return out | ({"master": master} if master else {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Every rank passes the same state, of any backend (each reads the checkpoint), after
        `load_full_weights`, and writes its own partitions; no communication."""
        with configured_hyperparameters(self.optimizer, self.scheduler):
            self._load_state(state)

    def _load_state(self, state: dict[str, Any]) -> None:
        utils = import_deepspeed().utils
        saved = state["optimizer"]["state"]
        step = max(float(s["step"]) for s in saved.values())
        for flat in self._partitions():
            self.optimizer.state[flat]["step"].fill_(step)
        for name, param in self._trained().items():
            for k in _MOMENTS if name in saved else ():  # a parameter that never had a gradient has no state
                utils.safe_set_full_optimizer_state(param, saved[name][k], k)
            if name in state.get("master", {}):
                utils.safe_set_full_fp32_param(param, state["master"][name])
        for group, saved_group in zip(self.optimizer.param_groups, state["optimizer"]["param_groups"], strict=True):
            group.update({k: v for k, v in saved_group.items() if k != "params"})  # then backends/hyper.py
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
