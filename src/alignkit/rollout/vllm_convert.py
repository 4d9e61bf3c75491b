"""Our sampling parameters -> vLLM's, and vLLM's outputs -> our Generations. Pure: no vLLM import,
so that the mapping is tested on CPU with objects shaped like vLLM's (RequestOutput.outputs, each a
CompletionOutput with index, text, token_ids, logprobs, finish_reason)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from alignkit.config.sampling import SamplingParams
from alignkit.errors import AlignkitError
from alignkit.rollout.base import Generation

_FINISH = {"stop": "stop", "length": "length"}  # vLLM's other reason, "abort", is an error here


def request_seeds(seed: int | None, n_prompts: int) -> list[int | None]:
    """One seed per prompt, drawn from `seed`. vLLM gives sample j of a request seed + j, so equal
    seeds on every prompt would give all prompts the same random numbers; spread-out draws do not."""
    if seed is None:
        return [None] * n_prompts
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2**62, (n_prompts,), generator=gen).tolist()


def sampling_kwargs(params: SamplingParams, n_prompts: int) -> list[dict[str, Any]]:
    """Keyword arguments of one `vllm.SamplingParams` per prompt.

    `logprobs=0` returns the sampled token's log-prob alone; with the engine's
    `logprobs_mode="processed_logprobs"` it is taken after temperature, as the trainer computes it.
    Stop strings are kept in the text, as the HF engine keeps them."""
    base: dict[str, Any] = {
        "n": params.n,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,  # 0 disables in vLLM too
        "max_tokens": params.max_new_tokens,
        "stop": list(params.stop) or None,
        "stop_token_ids": list(params.stop_token_ids) or None,
        "include_stop_str_in_output": True,
        "logprobs": 0,
        "skip_special_tokens": True,
    }
    return [base | {"seed": s} for s in request_seeds(params.seed, n_prompts)]


def sampled_logprobs(token_ids: Sequence[int], logprobs: Sequence[Any] | None) -> list[float]:
    """The log-prob of each sampled token: position i of vLLM's logprobs maps token ids to Logprob
    objects (`.logprob`) and always holds the sampled token."""
    if logprobs is None or len(logprobs) != len(token_ids):
        got = "none" if logprobs is None else f"{len(logprobs)} positions"
        raise AlignkitError(f"vLLM returned {got} of log-probs for {len(token_ids)} tokens (asked with logprobs=0)")
    return [float(pos[t].logprob) for t, pos in zip(token_ids, logprobs, strict=True)]


def to_generations(outputs: Sequence[Any], n: int) -> list[Generation]:
    """`LLM.generate`'s RequestOutputs (one per prompt, in prompt order) -> n Generations per
    prompt, prompt-major, samples in their index order."""
    gens: list[Generation] = []
    for p, request in enumerate(outputs):
        samples = sorted(request.outputs, key=lambda c: c.index)
        if len(samples) != n:
            raise AlignkitError(f"vLLM returned {len(samples)} samples for prompt {p}, asked for {n}")
        for c in samples:
            reason = _FINISH.get(str(c.finish_reason))
            if reason is None:
                raise AlignkitError(f"vLLM sample {c.index} of prompt {p} ended with {c.finish_reason!r}")
            ids = list(c.token_ids)
            gens.append(Generation(p, ids, sampled_logprobs(ids, c.logprobs), reason, c.text))
    return gens
