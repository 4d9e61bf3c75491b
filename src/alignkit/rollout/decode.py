"""KV-cached decoding of one microbatch through a Hugging Face causal LM's forward.

Each distinct prompt is prefilled once (left-padded, with a padding mask and position ids); the cache
rows are then repeated so every sample of a prompt shares its prefill. Rows that finish leave the
batch and the cache at once, so the remaining steps cost only what is still being decoded.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Literal

import torch
from transformers import DynamicCache

from alignkit.config.sampling import SamplingParams
from alignkit.rollout.kv_cache import reserved_cache
from alignkit.rollout.sampling import sample
from alignkit.rollout.stop import StopStrings


@dataclass
class Decoded:
    """One row's result: tokens, their sampling log-probs, why it ended."""

    ids: list[int]
    logprobs: list[float]
    finish_reason: Literal["stop", "length"]  # stop: a stop id or stop string ended it


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
    rows_n, steps = len(expand), params.max_new_tokens
    extra = {"logits_to_keep": 1} if _accepts_logits_to_keep(model) else {}
    live, logits = _prefill(model, prompts, expand, steps, pad_id, extra)
    tokens = torch.zeros((rows_n, steps), dtype=torch.long, device=logits.device)
    logprobs = torch.zeros((rows_n, steps), dtype=torch.float32, device=logits.device)
    ended = [steps] * rows_n  # tokens kept per row
    reasons: list[Literal["stop", "length"]] = ["length"] * rows_n
    for t in range(steps):
        u = uniforms[live.rows, t] if uniforms is not None else None
        tok, lp = sample(logits, u, params.temperature, params.top_k, params.top_p)
        tokens[live.rows, t] = tok
        logprobs[live.rows, t] = lp
        finished = _finished(stop, tok, live.rows, tokens, t)  # one host sync per step
        for _, row in finished:
            ended[row], reasons[row] = t + 1, "stop"
        if t == steps - 1 or len(finished) == len(tok):
            break
        if finished:
            keep = torch.ones(len(tok), dtype=torch.bool)
            keep[[i for i, _ in finished]] = False
            keep = keep.nonzero().squeeze(1).to(tok.device)
            live.keep(keep)  # finished rows stop costing compute and memory
            tok = tok[keep]
        out = model(
            input_ids=tok[:, None],
            attention_mask=live.mask[:, : live.seen + 1] if live.mask is not None else None,
            position_ids=live.positions[:, None] + t,
            past_key_values=live.cache,
            use_cache=True,
            **extra,
        )
        live.seen += 1
        logits = out.logits[:, -1].float()

    ids_list, lp_list = tokens.tolist(), logprobs.tolist()
    return [Decoded(ids_list[r][: ended[r]], lp_list[r][: ended[r]], reasons[r]) for r in range(rows_n)]


@dataclass
class _Live:
    """The rows still decoding, all indexed by batch row."""

    rows: torch.Tensor  # (batch,) original row of each batch row
    positions: torch.Tensor  # (batch,) position of each row's first generated token
    mask: torch.Tensor | None  # (batch, width + steps) kv padding mask; None when no prompt is padded
    cache: DynamicCache
    seen: int  # kv positions in the cache (padded prompt width + tokens fed so far)

    def keep(self, index: torch.Tensor) -> None:
        """Keep only batch rows `index` (batch',), in the cache too."""
        self.rows, self.positions = self.rows[index], self.positions[index]
        self.mask = self.mask[index] if self.mask is not None else None
        self.cache.batch_select_indices(index)


def _prefill(
    model, prompts: list[list[int]], expand: list[int], steps: int, pad_id: int, extra: dict
) -> tuple[_Live, torch.Tensor]:
    """Run the distinct prompts once (left-padded), then repeat cache rows per `expand`.

    Returns the live batch of len(expand) rows and their next-token logits (rows, vocab) float32.
    """
    device = next(model.parameters()).device
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):  # left padding: every prompt ends where generation starts
        ids[i, width - len(p) :] = torch.tensor(p)
    prompt_mask = (torch.arange(width, device=device)[None, :] >= (width - lengths)[:, None]).long()
    padded = bool((lengths < width).any())
    cache = reserved_cache(model.config, width + steps)
    out = model(
        input_ids=ids.to(device),
        attention_mask=prompt_mask if padded else None,
        position_ids=(prompt_mask.cumsum(-1) - 1).clamp_min(0),
        past_key_values=cache,
        use_cache=True,
        **extra,
    )
    index = torch.tensor(expand, device=device)
    if expand != list(range(len(prompts))):
        cache.batch_select_indices(index)  # the n samples of a prompt share its prefill
    mask = None
    if padded:  # the kv mask for every step at once: prompt padding, then ones
        mask = torch.ones((len(expand), width + steps), dtype=torch.long, device=device)
        mask[:, :width] = prompt_mask[index]
    live = _Live(torch.arange(len(expand), device=device), lengths[index], mask, cache, width)
    return live, out.logits[:, -1].float()[index]


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
    pairs = zip(hit.tolist(), rows[hit].tolist(), strict=True)
    if strings is None:
        return list(pairs)
    recent = tokens[rows[hit], max(0, t + 1 - strings.window) : t + 1].tolist()
    return [
        p
        for p, is_stop, ids in zip(pairs, stopped[hit].tolist(), recent, strict=True)
        if is_stop or strings.completes(ids)
    ]


def _accepts_logits_to_keep(model) -> bool:
    """Whether forward can compute logits for the last position only (most HF causal LMs can)."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters
