"""Loading local Hugging Face models and tokenizers, with errors that say what is wrong."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from alignkit.config.schema import ModelConfig
from alignkit.errors import ModelError
from alignkit.models.attention_impl import choose_attn_implementation, fit_to_device
from alignkit.models.dropout import disable_dropout
from alignkit.models.lm_head import enable_chunked_logprobs
from alignkit.models.lora import apply_lora
from alignkit.models.padding import pad_id

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
    """The tokenizer as saved (no pad token is invented: models/padding.py picks the id to pad with),
    less a pad token that lies outside the model's embedding (padding with it would index past it)."""
    path = cfg.tokenizer_path or cfg.path
    config = json.loads((check_model_folder(cfg.path) / "config.json").read_text())
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load a tokenizer from {path}: {e}") from None
    rows = config.get("vocab_size", config.get("text_config", {}).get("vocab_size"))
    if isinstance(rows, int) and tok.pad_token_id is not None and tok.pad_token_id >= rows:
        bad = f"{tok.pad_token!r} (id {tok.pad_token_id})"
        tok.pad_token = None
        log.warning("%s: pad token %s is outside the model's %d-row embedding; padding with id %d instead",
                    path, bad, rows, pad_id(tok))
    return tok


def _load(auto_cls, cfg: ModelConfig, device: torch.device, **kwargs):
    check_model_folder(cfg.path)
    try:
        impl = choose_attn_implementation(auto_cls, cfg.path, cfg.attn_implementation)
        model = auto_cls.from_pretrained(cfg.path, dtype=DTYPES[cfg.dtype], attn_implementation=impl, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load a model from {cfg.path}: {e}") from None
    fit_to_device(model, device).to(device)
    if not cfg.dropout and (n := disable_dropout(model)):
        log.info("%s: %d dropout rates set to 0 for training (--model.dropout true keeps them)", cfg.path, n)
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
    text = model.config.get_text_config()
    if not isinstance(text.pad_token_id, int):
        # transformers' own forward pools at the last non-pad token and refuses batches without a pad
        # id; alignkit reads the score per token itself (models/forward.py), so any valid id will do,
        # and an int keeps the exported config loadable (Llama-3's EOS is a list: never a pad id).
        text.pad_token_id = pad_id(load_tokenizer(cfg))
    return apply_lora(model, cfg.lora, "SEQ_CLS")
