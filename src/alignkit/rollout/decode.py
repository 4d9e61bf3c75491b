"""KV-cached decoding of one microbatch through a Hugging Face causal LM's forward.

Each distinct prompt is prefilled once (left-padded, with a padding mask and position ids); the cache
rows are then repeated so every sample of a prompt shares its prefill. Rows that finish leave the
batch and the cache at once, so the remaining steps cost only what is still being decoded.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from alignkit.rollout.base import SamplingParams
from alignkit.rollout.kv_cache import reserved_cache
from alignkit.rollout.sampling import sample
from alignkit.rollout.stop import StopStrings


@dataclass
class Decoded:
    """One row's result: tokens, their sampling log-probs, why it ended."""

    ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" (stop id or stop string) or "length"


@dataclass(frozen=True)
class StopRules:
    """What ends a row: `ids` (vocab,) bool table of stop token ids; `strings` or None."""

    ids: torch.Tensor
    strings: StopStrings | None


def decode(
    model,
    prompts: list[list[int]],
    expand: list[int],
    uniforms: torch.Tensor | None,
    params: SamplingParams,
    stop: StopRules,
    pad_id: int,
) -> list[Decoded]:
    """Decode len(expand) rows; row i continues prompts[expand[i]].

    uniforms: (rows, max_new_tokens) in [0, 1) on the model's device, row i's draw for each step;
    None when greedy. Returns one Decoded per row, in row order.
    """
    device = stop.ids.device
    rows_n, steps = len(expand), params.max_new_tokens
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    width = max(len(p) for p in prompts)
    padded = bool((lengths < width).any())
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):  # left padding: every prompt ends where generation starts
        ids[i, width - len(p) :] = torch.tensor(p)
    ids = ids.to(device)
    prompt_mask = torch.arange(width, device=device)[None, :] >= (width - lengths)[:, None]

    cache = reserved_cache(model.config, width + steps)
    extra = {"logits_to_keep": 1} if _accepts_logits_to_keep(model) else {}
    out = model(
        input_ids=ids,
        attention_mask=prompt_mask.long() if padded else None,
        position_ids=(prompt_mask.long().cumsum(-1) - 1).clamp_min(0),
        past_key_values=cache,
        use_cache=True,
        **extra,
    )
    expand_t = torch.tensor(expand, device=device)
    logits = out.logits[:, -1].float()[expand_t]
    if expand != list(range(len(prompts))):
        cache.batch_select_indices(expand_t)  # the n samples of a prompt share its prefill
    # kv mask for every step at once: prompt padding, then ones; sliced to the length seen so far
    mask = torch.ones((rows_n, width + steps), dtype=torch.long, device=device) if padded else None
    if mask is not None:
        mask[:, :width] = prompt_mask[expand_t]
    positions = lengths[expand_t]  # position of the first generated token

    rows = torch.arange(rows_n, device=device)  # which original row each batch row is
    tokens = torch.zeros((rows_n, steps), dtype=torch.long, device=device)
    logprobs = torch.zeros((rows_n, steps), dtype=torch.float32, device=device)
    ended = [steps] * rows_n  # tokens kept per row
    reasons = ["length"] * rows_n
    for t in range(steps):
        u = uniforms[rows, t] if uniforms is not None else None
        tok, lp = sample(logits, u, params.temperature, params.top_k, params.top_p)
        tokens[rows, t] = tok
        logprobs[rows, t] = lp
        finished = _finished(stop, tok, rows, tokens, t)  # one host sync per step
        for _, row in finished:
            ended[row], reasons[row] = t + 1, "stop"
        if t == steps - 1:
            break
        if finished:
            keep = torch.ones(len(rows), dtype=torch.bool)
            keep[[i for i, _ in finished]] = False
            if not keep.any():
                break
            keep = keep.nonzero().squeeze(1).to(device)
            rows, tok, positions = rows[keep], tok[keep], positions[keep]
            mask = mask[keep] if mask is not None else None
            cache.batch_select_indices(keep)  # finished rows stop costing compute and memory
        out = model(
            input_ids=tok[:, None],
            attention_mask=mask[:, : width + t + 1] if mask is not None else None,
            position_ids=(positions + t)[:, None],
            past_key_values=cache,
            use_cache=True,
            **extra,
        )
        logits = out.logits[:, -1].float()

    ids_list, lp_list = tokens.tolist(), logprobs.tolist()
    return [
        Decoded(ids_list[r][: ended[r]], lp_list[r][: ended[r]], reasons[r]) for r in range(rows_n)
    ]


def _finished(
    stop: StopRules, tok: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor, t: int
) -> list[tuple[int, int]]:
    """Rows that end with the token just sampled at step t: (batch index, original row) pairs.

    tok, rows: (batch,). tokens: (rows, steps), filled up to step t.
    """
    stopped = stop.ids[tok]
    strings = stop.strings
    flagged = stopped if strings is None else stopped | strings.candidates[tok]
    hit = flagged.nonzero().squeeze(1)
    if hit.numel() == 0:
        return []
    pairs = zip(hit.tolist(), rows[hit].tolist())
    if strings is None:
        return list(pairs)
    recent = tokens[rows[hit], max(0, t + 1 - strings.window) : t + 1].tolist()
    return [p for p, is_stop, ids in zip(pairs, stopped[hit].tolist(), recent) if is_stop or strings.completes(ids)]


def _accepts_logits_to_keep(model) -> bool:
    """Whether forward can compute logits for the last position only (most HF causal LMs can)."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters
