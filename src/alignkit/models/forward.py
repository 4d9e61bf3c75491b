"""Forward passes over packed rows (data/packing.py): token log-probs for causal LMs, last-token
scores for reward models. Both return per-token tensors aligned with `input_ids` `(rows, seq)`."""

from __future__ import annotations

import torch

from alignkit.algos.entropy import entropy_from_logits
from alignkit.data.packing import PackedBatch


def _unwrap(model):
    """The transformers model under a peft wrapper (LoRA layers stay injected in it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def uses_varlen_kernel(model) -> bool:
    """flash-attention reads sample boundaries from restarting position ids; no mask is needed."""
    return str(getattr(_unwrap(model).config, "_attn_implementation", "")).startswith("flash")


def block_causal_mask(seg_ids: torch.Tensor) -> torch.Tensor:
    """`(rows, 1, seq, seq)` bool: token i attends to token j <= i of the same sample. Padding
    (seg -1) attends to itself only, so no row of the mask is empty (that would give NaN)."""
    t = seg_ids.shape[1]
    same = seg_ids[:, :, None] == seg_ids[:, None, :]
    causal = torch.ones(t, t, dtype=torch.bool, device=seg_ids.device).tril()
    eye = torch.eye(t, dtype=torch.bool, device=seg_ids.device)
    keep = (same & causal & (seg_ids[:, None, :] >= 0)) | eye
    return keep[:, None]


def model_inputs(model, batch: PackedBatch) -> dict[str, torch.Tensor]:
    kwargs = {"input_ids": batch.input_ids, "position_ids": batch.position_ids}
    if not uses_varlen_kernel(model):
        kwargs["attention_mask"] = block_causal_mask(batch.seg_ids)
    return kwargs


def gather_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """`(rows, seq)`: log p(token t | tokens < t) at position t under softmax(logits / temperature);
    position 0 gets 0.

    Computed as logit[target] - logsumexp(logits) in float32, which avoids materialising a second
    `(rows, seq, vocab)` tensor of log-softmax values.
    """
    logits = logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    targets = input_ids[:, 1:]
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    lp = picked - torch.logsumexp(logits, dim=-1)
    return torch.nn.functional.pad(lp, (1, 0))


def causal_forward(
    model, batch: PackedBatch, temperature: float = 1.0, with_entropy: bool = False, entropy_grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token log-probs `(rows, seq)` of a causal LM on a packed batch, and optionally the entropy of the
    distribution each token was drawn from (same alignment). Positions that start a sample carry
    garbage and must be masked by the caller (`batch.loss_mask` is). The entropy carries a gradient
    only with `entropy_grad` (an entropy bonus): logged alone, it builds no graph over the
    `(rows, seq, vocab)` softmax."""
    logits = model(**model_inputs(model, batch), use_cache=False).logits
    lp = gather_logprobs(logits, batch.input_ids, temperature)
    if not with_entropy:
        return lp, None
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        scaled = logits[:, :-1].float() / temperature
        ent = torch.nn.functional.pad(entropy_from_logits(scaled), (1, 0))
    return lp, ent


def causal_logprobs(model, batch: PackedBatch) -> torch.Tensor:
    """Token log-probs `(rows, seq)` at temperature 1 (see `causal_forward`)."""
    return causal_forward(model, batch)[0]


def segment_last_index(seg_ids: torch.Tensor, n: int) -> torch.Tensor:
    """Flat index (into `seg_ids.view(-1)`) of the last token of each sample 0..n-1."""
    flat = seg_ids.reshape(-1)
    idx = torch.arange(flat.numel(), device=flat.device)
    last = torch.full((n,), -1, dtype=torch.long, device=flat.device)
    valid = flat >= 0
    return last.scatter_reduce(0, flat[valid], idx[valid], reduce="amax")


def segment_sum(values: torch.Tensor, seg_ids: torch.Tensor, n: int) -> torch.Tensor:
    """`(n,)`: the sum of `values` `(rows, seq)` over each sample's tokens."""
    flat, seg = values.reshape(-1), seg_ids.reshape(-1)
    valid = seg >= 0
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, seg[valid], flat[valid])


def _backbone_hidden(model, batch: PackedBatch) -> tuple[torch.nn.Module, torch.Tensor]:
    """(the model under any peft wrapper, last hidden states `(rows, seq, hidden)`)."""
    inner = _unwrap(model)
    backbone = getattr(inner, inner.base_model_prefix)
    return inner, backbone(**model_inputs(model, batch), use_cache=False).last_hidden_state


def reward_scores(model, batch: PackedBatch) -> torch.Tensor:
    """`(n_samples,)` scalar reward of each sample: the score head applied to the hidden state of the
    sample's last token. Runs the backbone and the head directly because the transformers
    sequence-classification forward pools one position per row, which packing breaks."""
    inner, hidden = _backbone_hidden(model, batch)
    last = segment_last_index(batch.seg_ids, batch.n_samples)
    h = hidden.reshape(-1, hidden.shape[-1])[last]
    return inner.score(h).squeeze(-1).float()


def token_values(model, batch: PackedBatch) -> torch.Tensor:
    """`(rows, seq)` critic values aligned with the actions: position t holds V(tokens < t), the
    score head on the hidden state of token t - 1 (position 0 gets 0), like `gather_logprobs`."""
    inner, hidden = _backbone_hidden(model, batch)
    values = inner.score(hidden).squeeze(-1).float()
    return torch.nn.functional.pad(values[:, :-1], (1, 0))


def sequence_logps(model, batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-prob of each sample's target tokens `(n,)`, target-token count `(n,)`)."""
    lp = causal_logprobs(model, batch)
    sums = segment_sum(lp * batch.loss_mask, batch.seg_ids, batch.n_samples)
    lens = segment_sum(batch.loss_mask, batch.seg_ids, batch.n_samples)
    return sums, lens
