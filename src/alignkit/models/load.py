"""Loading local Hugging Face models and tokenizers, with errors that say what is wrong."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from alignkit.config.schema import LoraConfig, ModelConfig
from alignkit.errors import ModelError
from alignkit.models.lm_head import enable_chunked_logprobs

log = logging.getLogger("alignkit")

# Written beside a reward model by `alignkit rm`: {mean, std, count} of its scores on the training data.
REWARD_STATS_FILE = "reward_stats.json"

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_model_folder(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model folder not found: {path}")
    if not p.is_dir() or not (p / "config.json").is_file():
        raise ModelError(f"{path} is not a Hugging Face model folder (no config.json); run `alignkit init-tiny` for a test model")
    try:
        json.loads((p / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}/config.json is not valid JSON ({e})") from None
    return p


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"--train.device {name} asked for CUDA, but no CUDA device is available")
    return torch.device(name)


def load_tokenizer(cfg: ModelConfig):
    path = cfg.tokenizer_path or cfg.path
    check_model_folder(cfg.path)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load a tokenizer from {path}: {e}") from None
    if tok.pad_token_id is None:
        # Padding only fills rows that packing left short; its value is never attended or scored.
        tok.pad_token = tok.eos_token
    return tok


def _load(auto_cls, cfg: ModelConfig, device: torch.device, **kwargs):
    check_model_folder(cfg.path)
    try:
        model = auto_cls.from_pretrained(
            cfg.path, dtype=DTYPES[cfg.dtype], attn_implementation=cfg.attn_implementation, **kwargs
        )
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load a model from {cfg.path}: {e}") from None
    model.to(device)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    return model


def load_causal_lm(cfg: ModelConfig, device: torch.device):
    model = _load(AutoModelForCausalLM, cfg, device)
    enable_chunked_logprobs(model, cfg.logprob_chunk_tokens)
    return apply_lora(model, cfg.lora, "CAUSAL_LM")


def load_reward_model(cfg: ModelConfig, device: torch.device):
    """A sequence-classification model with one output: the causal LM body plus a scalar `score` head
    (newly initialised when `cfg.path` holds a causal LM)."""
    model = _load(AutoModelForSequenceClassification, cfg, device, num_labels=1)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    return apply_lora(model, cfg.lora, "SEQ_CLS")


def apply_lora(model, lora: LoraConfig, task_type: str):
    if lora.rank <= 0:
        return model
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = "all-linear" if lora.target_modules == ["all-linear"] else list(lora.target_modules)
    peft_cfg = PeftLoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type=task_type
    )
    return get_peft_model(model, peft_cfg)


def merged_for_export(model):
    """The plain transformers model with LoRA adapters folded in (the model itself when no LoRA)."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model
