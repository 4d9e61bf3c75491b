"""The final model in Hugging Face format: loads with the Auto classes, LoRA merged in."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from alignkit.backends.distributed import rank
from alignkit.checkpoint.atomic import atomic_dir
from alignkit.config.schema import LoraConfig, ModelConfig
from alignkit.models.lora import merged_for_export
from alignkit.runtime.disk import writing

LoadModel = Callable[[ModelConfig, torch.device], torch.nn.Module]  # load_causal_lm, load_reward_model


def export_hf(model, tokenizer, path: Path, extra_json: dict[str, Any] | None = None) -> Path:
    """Save `model` (adapters folded in) and `tokenizer` to `path`; `extra_json` maps file names to
    JSON-serialisable content written beside them (for example reward statistics)."""
    plain = merged_for_export(model)
    with writing(path, "the final model"), atomic_dir(path) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, content in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(content, indent=2))
    return path


def export_trained(backend, load: LoadModel, model_cfg: ModelConfig, tokenizer, path: Path,
                   extra_json: dict[str, Any] | None = None) -> None:
    """`export_hf` of a training backend's model. Collective under a sharded backend: every worker gathers
    the full weights (LoRA merged), and rank 0 copies them into a plain model `load`ed on the CPU and
    writes it; the model itself, sharded, cannot be saved."""
    if not dist.is_initialized():  # the torch backend: the model is whole here
        export_hf(backend.model, tokenizer, path, extra_json)
        return
    weights = backend.full_weights()  # collective: every worker walks it
    if rank() != 0:
        for _ in weights:
            pass
        return
    plain = load(dataclasses.replace(model_cfg, lora=LoraConfig(rank=0)), torch.device("cpu"))
    params = dict(plain.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for name, t in weights:
            params[name].copy_(t)
    export_hf(plain, tokenizer, path, extra_json)
