"""The rollout-engine protocol: every engine (HF torch, vLLM) generates and takes new weights this way."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from alignkit.config.sampling import SamplingParams


@dataclass(frozen=True)
class Generation:
    """One sampled response. `logprobs[i]` is the sampling log-prob of `response_ids[i]` under the
    distribution actually sampled from (after temperature; before top-p/top-k truncation, except
    with the vLLM engine, which reports it after truncation: see rollout/vllm.py)."""

    prompt_index: int
    response_ids: list[int]
    logprobs: list[float]
    finish_reason: Literal["stop", "length"]
    text: str


class RolloutEngine(Protocol):
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        """`params.n` generations per prompt, ordered prompt-major: prompt 0's n samples first."""

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the engine's weights (names as in the trainer's `model.named_parameters()`)."""

    def sleep(self) -> None:
        """Release memory (KV cache, weights on GPU) while training runs; no-op where nothing is held."""

    def wake_up(self) -> None: ...
