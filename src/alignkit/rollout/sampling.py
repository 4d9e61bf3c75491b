"""Next-token sampling math: temperature, top-k, top-p and greedy, with the sampling log-probs.

Pure torch. Sampling is by inverse CDF with one uniform number per row supplied by the caller, so a
sample depends only on its row's logits and its own uniform: the engine draws the uniforms per
(sequence, step) from a seeded generator, which makes results independent of batch composition
(microbatching, rows leaving the batch).
"""

from __future__ import annotations

import torch


def sample(
    logits: torch.Tensor,
    uniforms: torch.Tensor | None,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row.

    logits: (batch, vocab) float. uniforms: (batch,) in [0, 1); unused (may be None) when greedy.
    temperature 0 is greedy (argmax). Otherwise top-k (0 disables) keeps the k most likely tokens,
    then top-p keeps the smallest most-likely set whose mass (within the top-k set) is >= top_p.
    Returns tokens (batch,) long and their log-probs (batch,) float: log_softmax(logits / T) at the
    token, before truncation (T = 1 when greedy).
    """
    if temperature == 0:
        tokens = logits.argmax(-1)
        return tokens, _gather(torch.log_softmax(logits, -1), tokens)
    assert uniforms is not None, "sampling needs one uniform per row"
    logp = torch.log_softmax(logits / temperature, -1)
    weights, order = truncate(logp.exp(), top_k, top_p)
    choice = inverse_cdf(weights, uniforms)
    tokens = choice if order is None else _gather(order, choice)
    return tokens, _gather(logp, tokens)


def truncate(
    probs: torch.Tensor, top_k: int = 0, top_p: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Zero out tokens removed by top-k / top-p.

    probs: (batch, vocab). Returns (weights, order): weights (batch, m) are the kept, unnormalised
    probabilities (0 where removed); order (batch, m) maps column j back to its vocabulary id, or is
    None when weights is still indexed by vocabulary id (no truncation asked for).
    """
    order = None
    if 0 < top_k < probs.shape[-1]:
        probs, order = probs.topk(top_k, dim=-1)  # sorted descending: exactly k kept
    if top_p < 1.0:
        if order is None:
            probs, order = probs.sort(dim=-1, descending=True)
        mass_before = probs.cumsum(-1) - probs
        # relative to the top-k set's mass, like transformers and vLLM (top-p after top-k renormalises)
        keep = mass_before < top_p * probs.sum(-1, keepdim=True)
        probs = probs * keep
    return probs, order


def inverse_cdf(weights: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Column index drawn in proportion to `weights` (batch, m) >= 0 by inverse CDF with `uniforms` (batch,).

    Never returns a zero-weight column: the target stays strictly below the total mass.
    """
    cdf = weights.cumsum(-1)
    total = cdf[:, -1:]
    target = torch.minimum(
        uniforms.to(cdf.dtype)[:, None] * total, torch.nextafter(total, torch.zeros_like(total))
    )
    return torch.searchsorted(cdf, target, right=True).squeeze(-1)


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (batch, m), index (batch,) -> values[i, index[i]] (batch,)."""
    return values.gather(-1, index[:, None]).squeeze(-1)
