"""How a rollout engine samples one call: the parameters every engine (HF torch, vLLM) takes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. `n` samples per prompt; temperature 0 is greedy."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k
    max_new_tokens: int = 128
    stop: list[str] = field(default_factory=list)  # stop strings; the text up to and including one is kept
    stop_token_ids: list[int] = field(default_factory=list)  # besides the tokenizer's EOS ids
    seed: int | None = None
