"""Model architectures the cost model reads: named sizes or a Hugging Face config folder.

Only the shapes matter (layers, hidden, heads, KV heads, MLP width, vocabulary): FLOPs, bytes and
memory all follow from them. Critic and reward models are the same trunk with a scalar head
(:meth:`ModelSpec.with_value_head`), so their logits cost nothing and their memory has no
vocabulary-sized head.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from alignkit.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer, Llama style by default (SwiGLU MLP, RMSNorm, no biases)."""

    name: str
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    intermediate: int  # MLP width
    vocab: int
    tie_embeddings: bool = False
    gated_mlp: bool = True  # SwiGLU: three MLP matrices; False: GPT-2 style, two
    lm_head: bool = True  # False: a scalar value head (critic, reward model)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.n_heads

    @property
    def kv_dim(self) -> int:
        """Width of K (and of V): n_kv_heads * head_dim. Smaller than hidden with GQA / MQA."""
        return self.n_kv_heads * self.head_dim

    @property
    def layer_params(self) -> int:
        attn = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_dim  # q, o + k, v
        mlp = (3 if self.gated_mlp else 2) * self.hidden * self.intermediate
        return attn + mlp + 2 * self.hidden  # two norms

    @property
    def head_out(self) -> int:
        """Output width of the final projection: the vocabulary, or 1 for a value head."""
        return self.vocab if self.lm_head else 1

    @property
    def n_params(self) -> int:
        """Total parameters (what weights, gradients and optimizer states scale with)."""
        embed = self.vocab * self.hidden
        head = self.hidden * self.head_out if (not self.lm_head or not self.tie_embeddings) else 0
        return embed + self.n_layers * self.layer_params + self.hidden + head

    @property
    def matmul_params(self) -> int:
        """Parameters that take part in a matmul per token: every layer plus the output head.
        The input embedding is a lookup, not a matmul, so it costs no FLOPs (a tied head still
        multiplies)."""
        return self.n_layers * self.layer_params + self.hidden * self.head_out

    def with_value_head(self) -> ModelSpec:
        return replace(self, lm_head=False, tie_embeddings=False)


def _llama(
    name: str, layers: int, hidden: int, heads: int, kv: int, mlp: int, vocab: int = 32000
) -> ModelSpec:
    return ModelSpec(name, layers, hidden, heads, kv, mlp, vocab)


# LLaMA-2 shapes from the released configs; 34b is Code Llama 34B (LLaMA-2 had no released 34B);
# the small ones are Llama-shaped models of the usual sizes (1b is TinyLlama-1.1B's shape).
NAMED_MODELS: dict[str, ModelSpec] = {
    "125m": _llama("125m", 12, 768, 12, 12, 2048),
    "350m": _llama("350m", 24, 1024, 16, 16, 2816),
    "1b": _llama("1b", 22, 2048, 32, 4, 5632),
    "3b": _llama("3b", 26, 3200, 32, 32, 8640),
    "7b": _llama("7b", 32, 4096, 32, 32, 11008),
    "8b": _llama("8b", 32, 4096, 32, 8, 14336, 128256),  # Llama-3 8B
    "13b": _llama("13b", 40, 5120, 40, 40, 13824),
    "34b": _llama("34b", 48, 8192, 64, 8, 22016),
    "70b": _llama("70b", 80, 8192, 64, 8, 28672),
}

_PREFIXES = ("llama-2-", "llama2-", "llama-")


def resolve_model(name_or_path: str) -> ModelSpec:
    """A named size ('7b', 'llama-2-7b', '70B') or a folder holding a Hugging Face config.json."""
    text = str(name_or_path).strip()
    key = text.lower()
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix) :]
    if key in NAMED_MODELS:
        return NAMED_MODELS[key]
    path = Path(text)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model folder {text!r} has no config.json")
        return from_hf_config(path)
    raise ConfigError(
        f"unknown model {text!r}: use a named size {sorted(NAMED_MODELS, key=_size_key)} "
        "or a folder with a Hugging Face config.json"
    )


def _size_key(name: str) -> float:
    scale = {"m": 1e-3, "b": 1.0}[name[-1]]
    return float(name[:-1]) * scale


# Families whose MLP is two matrices (up, down) instead of SwiGLU's three.
_UNGATED = {"gpt2", "opt", "gpt_neox", "gptj", "bloom", "falcon", "gpt_bigcode", "phi"}


def from_hf_config(path: str | Path) -> ModelSpec:
    """Read shapes from a local Hugging Face config folder (nothing is downloaded)."""
    from transformers import AutoConfig  # lazy: the planner's math needs no transformers

    try:
        cfg = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # transformers raises several kinds for a bad config
        raise ConfigError(f"cannot read the Hugging Face config in {str(path)!r}: {exc}") from exc
    return spec_from_config(cfg, name=Path(path).name or str(path), where=repr(str(path)))


def spec_from_config(cfg, name: str = "hf-model", where: str = "the config") -> ModelSpec:
    """Shapes from a transformers config object (LlamaConfig, Qwen2Config, GPT2Config ...)."""
    text_cfg = getattr(cfg, "text_config", None) or cfg  # multimodal configs nest the LM

    def get(*names: str, default: int | None = None) -> int:
        for n in names:
            v = getattr(text_cfg, n, None)
            if v is not None:
                return int(v)
        if default is None:
            raise ConfigError(f"{where} has none of {list(names)}")
        return default

    hidden = get("hidden_size", "n_embd", "d_model")
    heads = get("num_attention_heads", "n_head")
    return ModelSpec(
        name=name,
        n_layers=get("num_hidden_layers", "n_layer", "num_layers"),
        hidden=hidden,
        n_heads=heads,
        n_kv_heads=get("num_key_value_heads", default=heads),
        intermediate=get("intermediate_size", "n_inner", "ffn_dim", default=4 * hidden),
        vocab=get("vocab_size"),
        tie_embeddings=bool(getattr(text_cfg, "tie_word_embeddings", False)),
        gated_mlp=getattr(text_cfg, "model_type", "llama") not in _UNGATED,
    )
