"""LoRA adapters through peft, on any architecture.

Which weights get an adapter (`--model.lora.target_modules`):

- `all-linear` (the default): every linear layer of the decoder blocks, whatever the family calls it
  (`q_proj`, Phi-3's fused `qkv_proj`, GPT-NeoX's `query_key_value`, GPT-2's Conv1D `c_attn` ...),
  and the fused expert weights of MoE blocks. Not the LM head, not a reward model's `score` head
  (which peft trains whole, `modules_to_save`), nothing outside the blocks (embeddings, vision towers).
- Names: a linear layer whose name is, or ends with `.` + , one of them (peft's rule), anywhere in the
  model, and expert stacks the same way (`gate_up_proj`); `all-linear` among them adds the default set.
  A name that matches nothing is an error that lists the model's own block layers.

MoE experts are 3D parameters in transformers 5 (`mlp.experts.gate_up_proj`, `(experts, ., .)`), not
linear modules; they are adapted through peft's `target_parameters`, one rank-r adapter per expert, and
merge into the stack like any LoRA. The default adapts no router: the `*Router` modules, and linear
gates with a single output (Qwen2-MoE's `shared_expert_gate`); changing what the router picks is not
what a low-rank update of the experts is for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from transformers.pytorch_utils import Conv1D

from alignkit.config.schema import LoraConfig
from alignkit.errors import ConfigError

log = logging.getLogger("alignkit")

ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class Targets:
    """Full names (as `model.named_modules()` / `named_parameters()` give them) of what gets an adapter."""

    modules: list[str]
    expert_params: list[str]
    kinds: list[str]
    """The targets' names inside their block (`self_attn.q_proj`), once each: what the log line shows."""
    conv1d: bool
    """Every targeted module is a GPT-2-style Conv1D (weights stored (in, out): peft's fan_in_fan_out)."""


def _is_linear(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.Linear | Conv1D)


def _is_router(module: torch.nn.Module) -> bool:
    return type(module).__name__.endswith("Router") or (_is_linear(module) and 1 in module.weight.shape)


def block_layers(model) -> tuple[dict[str, str], dict[str, str]]:
    """The decoder blocks' linear layers and 3D expert weights, routers left out: `{full name: name
    inside its block}`, e.g. `model.layers.0.self_attn.q_proj -> self_attn.q_proj`. Blocks are the
    entries of the decoder's `nn.ModuleList`s (`model.layers`, GPT-2's `transformer.h`)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    in_decoder = {id(m) for m in decoder.modules()}
    lists = [n for n, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and id(m) in in_decoder]
    linear: dict[str, str] = {}
    experts: dict[str, str] = {}
    routers: list[str] = []
    for name, module in model.named_modules():
        prefix = next((p for p in lists if name.startswith(p + ".")), None)
        if prefix is None or any(name.startswith(r + ".") for r in routers):
            continue
        if _is_router(module):
            routers.append(name)
            continue
        inner = name[len(prefix) + 1 :].partition(".")[2]  # drop the block index
        if _is_linear(module):
            linear[name] = inner
        elif not isinstance(module, torch.nn.modules.conv._ConvNd):
            for pname, p in module.named_parameters(recurse=False):
                if p.dim() == 3:
                    experts[f"{name}.{pname}"] = f"{inner}.{pname}"
    return linear, experts


def _matches(name: str, key: str) -> bool:
    return name == key or name.endswith("." + key)


def resolve_targets(model, names: list[str]) -> Targets:
    """The layers `names` pick (see the module docstring); a name that matches nothing is a ConfigError."""
    linear, experts = block_layers(model)
    everywhere = [n for n, m in model.named_modules() if _is_linear(m)]
    keys = [k for k in names if k != ALL_LINEAR]
    missing = [k for k in keys if not any(_matches(n, k) for n in [*everywhere, *experts])]
    if missing:
        own = sorted(set(linear.values())) + sorted(set(experts.values()))
        raise ConfigError(
            f"--model.lora.target_modules: {', '.join(missing)} match{'es' if len(missing) == 1 else ''} no layer "
            f"of {type(model).__name__}; its decoder blocks' linear layers are {', '.join(own)} (or use all-linear)"
        )
    every = ALL_LINEAR in names
    modules = [n for n in everywhere if (every and n in linear) or any(_matches(n, k) for k in keys)]
    params = [n for n in experts if every or any(_matches(n, k) for k in keys)]
    if not modules and not params:
        raise ConfigError(f"--model.lora.target_modules: {type(model).__name__} has no linear layer in its decoder blocks")
    conv = all(isinstance(model.get_submodule(n), Conv1D) for n in modules) and bool(modules)
    kinds = sorted({linear.get(n, n) for n in modules} | {experts[n] for n in params})
    return Targets(modules, params, kinds, conv)


def _summary(model, targets: Targets, lora: LoraConfig) -> str:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    parts = f"{len(targets.modules)} modules" + (f" and {len(targets.expert_params)} expert weight stacks"
                                                 if targets.expert_params else "")
    return (f"LoRA rank {lora.rank} on {parts} ({', '.join(targets.kinds)}): {trainable:,} trainable parameters of "
            f"{total:,} ({100 * trainable / max(total, 1):.2f}%)")


def apply_lora(model, lora: LoraConfig, task_type: str):
    """`model` wrapped by peft with adapters on the targets of `lora` (the model itself at rank 0).
    `task_type` SEQ_CLS also trains the `score` head whole (peft's modules_to_save)."""
    if lora.rank <= 0:
        return model
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = resolve_targets(model, list(lora.target_modules))
    if targets.expert_params and lora.dropout:
        raise ConfigError(
            f"--model.lora.dropout {lora.dropout}: peft's adapters on fused MoE expert weights "
            f"({targets.expert_params[0]}, ...) take no dropout; set it to 0 or leave the experts out of "
            "--model.lora.target_modules"
        )
    peft_cfg = PeftLoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, task_type=task_type,
        target_modules=targets.modules, target_parameters=targets.expert_params or None,
        fan_in_fan_out=targets.conv1d,
    )
    wrapped = get_peft_model(model, peft_cfg)
    log.info(_summary(wrapped, targets, lora))
    return wrapped


def merged_for_export(model):
    """The plain transformers model with LoRA adapters folded in (the model itself when no LoRA)."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model
