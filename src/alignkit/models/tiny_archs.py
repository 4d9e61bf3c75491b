"""Tiny random configs of popular Hugging Face architectures, for `alignkit init-tiny --arch NAME`.

Each entry turns the shared size knobs (hidden, layers, heads, ...) and the tokenizer's special ids into
that architecture's own config class, keeping what makes the family different: sliding windows and
per-layer attention types (Mistral, Gemma 2/3, gpt-oss), eager-only attention (Gemma 2, gpt-oss), MoE
blocks (Qwen3-MoE, Mixtral, gpt-oss), fused projections (Phi-3 `qkv_proj`, GPT-NeoX
`query_key_value`), absolute positions and Conv1D layers (GPT-2), logit soft-capping (Gemma 2), and the
Llama-3 token layout (no pad token, a list of EOS ids). The sliding window is small (`window`) so that
test sequences are longer than it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import transformers
from transformers import PretrainedConfig


@dataclass(frozen=True)
class Sizes:
    """The knobs every architecture shares; `head_dim` is hidden / heads."""

    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    max_position: int
    window: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass(frozen=True)
class SpecialIds:
    """Token ids the config records. `pad` None is the Llama-3 layout (no pad token)."""

    bos: int
    eos: list[int]
    pad: int | None


def _decoder(s: Sizes, ids: SpecialIds, tied: bool = False) -> dict:
    """The fields of the Llama-like families (names shared by most decoder configs)."""
    return dict(
        vocab_size=s.vocab, hidden_size=s.hidden, intermediate_size=s.intermediate, num_hidden_layers=s.layers,
        num_attention_heads=s.heads, num_key_value_heads=s.kv_heads, max_position_embeddings=s.max_position,
        bos_token_id=ids.bos, eos_token_id=ids.eos, pad_token_id=ids.pad, tie_word_embeddings=tied,
    )


def _alternating(s: Sizes) -> list[str]:
    """Sliding layers with a full-attention layer last (Gemma 2/3, gpt-oss interleave the two)."""
    return ["sliding_attention"] * (s.layers - 1) + ["full_attention"] if s.layers > 1 else ["sliding_attention"]


_MOE = {"num_experts_per_tok": 2, "router_aux_loss_coef": 0.0}


ARCHS: dict[str, Callable[[Sizes, SpecialIds], PretrainedConfig]] = {
    "llama": lambda s, i: transformers.LlamaConfig(**_decoder(s, i, tied=True)),
    "llama_untied": lambda s, i: transformers.LlamaConfig(**_decoder(s, i)),
    "llama3": lambda s, i: transformers.LlamaConfig(**_decoder(s, i, tied=True)),
    "qwen2": lambda s, i: transformers.Qwen2Config(**_decoder(s, i, tied=True)),
    "qwen3": lambda s, i: transformers.Qwen3Config(**_decoder(s, i, tied=True), head_dim=s.head_dim),
    "qwen3_moe": lambda s, i: transformers.Qwen3MoeConfig(
        **_decoder(s, i), head_dim=s.head_dim, num_experts=4, moe_intermediate_size=s.intermediate // 2, **_MOE),
    "mistral": lambda s, i: transformers.MistralConfig(**_decoder(s, i), sliding_window=s.window),
    "mixtral": lambda s, i: transformers.MixtralConfig(
        **_decoder(s, i), sliding_window=s.window, num_local_experts=4, **_MOE),
    "gemma2": lambda s, i: transformers.Gemma2Config(
        **_decoder(s, i, tied=True), head_dim=s.head_dim, sliding_window=s.window, query_pre_attn_scalar=s.head_dim,
        layer_types=_alternating(s)),
    "gemma3": lambda s, i: transformers.Gemma3TextConfig(
        **_decoder(s, i, tied=True), head_dim=s.head_dim, sliding_window=s.window, query_pre_attn_scalar=s.head_dim,
        layer_types=_alternating(s)),
    "phi3": lambda s, i: transformers.Phi3Config(**_decoder(s, i), sliding_window=s.window),
    "olmo2": lambda s, i: transformers.Olmo2Config(**_decoder(s, i)),
    "gpt_oss": lambda s, i: transformers.GptOssConfig(
        **_decoder(s, i), head_dim=s.head_dim, sliding_window=s.window, layer_types=_alternating(s),
        num_local_experts=4, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **_MOE),
    "gpt2": lambda s, i: transformers.GPT2Config(
        vocab_size=s.vocab, n_embd=s.hidden, n_layer=s.layers, n_head=s.heads, n_inner=s.intermediate,
        n_positions=s.max_position, bos_token_id=i.bos, eos_token_id=i.eos[0], pad_token_id=i.pad),
    "gpt_neox": lambda s, i: transformers.GPTNeoXConfig(
        vocab_size=s.vocab, hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads,
        intermediate_size=s.intermediate, max_position_embeddings=s.max_position, bos_token_id=i.bos,
        eos_token_id=i.eos[0], pad_token_id=i.pad, tie_word_embeddings=False),
}
"""Architecture name -> config builder. `llama3` differs from `llama` in its tokens, not its config:
`build_tiny` gives it no pad token."""

NO_PAD_TOKEN = frozenset({"llama3"})
"""Architectures built in the Llama-3 token layout: no pad token, EOS ids a list."""
