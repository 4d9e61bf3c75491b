"""Rollout (generation) settings for online RL: how many samples, how to sample, which engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from alignkit.config.sampling import SamplingParams


@dataclass(frozen=True)
class RolloutConfig:
    """How responses are generated during online RL."""

    n_samples_per_prompt: int = 8
    """Responses sampled per prompt (the group size of GRPO / RLOO)."""
    temperature: float = 1.0
    """Sampling temperature; 0 is greedy."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest most-likely set with this much mass (1 disables)."""
    top_k: int = 0
    """Keep only the k most likely tokens (0 disables)."""
    max_new_tokens: int = 128
    """Longest response in tokens; a response cut here ends with finish_reason 'length'."""
    stop: list[str] = field(default_factory=list)
    """Stop strings: a response ends once its text contains one (the string is kept)."""
    engine: Literal["hf", "vllm"] = "hf"
    """Generation engine: hf (torch, CPU or GPU) or vllm (CUDA GPUs; pip install 'alignkit[vllm]')."""
    tensor_parallel_size: int = 1
    """With --rollout.engine vllm: GPUs each engine replica spreads the model over (tensor parallel)."""
    gpu_memory_utilization: float = 0.5
    """With --rollout.engine vllm: share of each GPU's memory the engine takes for weights and KV cache.
    Colocated with training, the trainer needs the rest while the engine is awake."""
    batch_size: int = 0
    """Most sequences decoded at once, to bound memory (0: all of a step's sequences together)."""
    num_workers: int = 1
    """Rollout engine replicas (Ray actors with --executor ray); the prompts are split among them."""
    async_: bool = False
    """--rollout.async: generate the next batches while the trainer trains (needs --executor ray)."""
    max_staleness: int = 1
    """With --rollout.async: how many policy versions a sample may lag behind the trainer (batches in flight)."""
    tis_cap: float = 2.0
    """With --rollout.async or --rollout.engine vllm: cap of the truncated importance weight
    pi_old / pi_behaviour of samples from an older policy or from the engine's own numerics."""

    def sampling_params(self, seed: int | None) -> SamplingParams:
        """The per-call sampling parameters these settings describe, with `seed` for reproducibility."""
        return SamplingParams(
            n=self.n_samples_per_prompt,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_new_tokens=self.max_new_tokens,
            stop=list(self.stop),
            seed=seed,
        )
