"""Forward passes over packed rows (data/packing.py): token log-probs for causal LMs, last-token
scores for reward models. Both return per-token tensors aligned with `input_ids` `(rows, seq)`."""

from __future__ import annotations

import torch

from alignkit.algos.entropy import entropy_from_logits
from alignkit.data.packing import PackedBatch
from alignkit.models.attention_mask import packed_attention_mask
from alignkit.models.chunked_head import chunked_token_stats
from alignkit.models.lm_head import ChunkedHead, chunked_head


def _unwrap(model):
    """The transformers model under a DeepSpeed engine (whose own `config` is DeepSpeed's) and a peft
    wrapper (LoRA layers stay injected in it)."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def uses_varlen_kernel(model) -> bool:
    """flash-attention reads sample boundaries from restarting position ids; no mask is needed."""
    return str(getattr(_unwrap(model).config, "_attn_implementation", "")).startswith("flash")


def model_inputs(model, batch: PackedBatch) -> dict:
    """Keyword arguments of a forward over a packed batch: ids, position ids and, except for
    flash-attention (varlen, boundaries from position ids), the packed attention mask in the model's own
    format, sliding windows and per-layer types included (models/attention_mask.py)."""
    kwargs = {"input_ids": batch.input_ids, "position_ids": batch.position_ids}
    if not uses_varlen_kernel(model):
        base = _unwrap(model)
        kwargs["attention_mask"] = packed_attention_mask(
            base.config, batch.seg_ids, batch.position_ids, batch.parent, base.get_input_embeddings().weight.dtype
        )
    return kwargs


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature)[target] over the last dim, as logit[target] - logsumexp in
    float32, which avoids materialising a second `(..., vocab)` tensor of log-softmax values."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def gather_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """`(rows, seq)`: log p(token t | tokens < t) at position t under softmax(logits / temperature);
    position 0 gets 0."""
    lp = token_logprobs(logits[:, :-1], input_ids[:, 1:], temperature)
    return torch.nn.functional.pad(lp, (1, 0))


def continuation_starts(batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor] | None:
    """For samples that continue a shared prompt: (flat position of each one's first token, flat
    position of its prompt's last token, which predicts it). None when nothing is shared."""
    if batch.parent is None:
        return None
    n_seg = batch.parent.numel()
    has = batch.parent >= 0
    first = segment_first_index(batch.seg_ids, n_seg)[has]
    return first, segment_last_index(batch.seg_ids, n_seg)[batch.parent[has]]


def causal_forward(
    model, batch: PackedBatch, temperature: float = 1.0, with_entropy: bool = False, entropy_grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token log-probs `(rows, seq)` of a causal LM on a packed batch, and optionally the entropy of the
    distribution each token was drawn from (same alignment). Positions that start a sample carry
    garbage and must be masked by the caller (`batch.loss_mask` is). The entropy carries a gradient
    only with `entropy_grad` (an entropy bonus): logged alone, it builds no graph over the
    `(rows, seq, vocab)` softmax. A model loaded with a chunked head (models/lm_head.py, the default)
    never holds its `(rows, seq, vocab)` logits: see `chunked_causal_forward`."""
    if (head := chunked_head(_unwrap(model))) is not None:
        return chunked_causal_forward(model, head, batch, temperature, with_entropy, entropy_grad)
    logits = model(**model_inputs(model, batch), use_cache=False).logits
    lp = gather_logprobs(logits, batch.input_ids, temperature)
    jumps = continuation_starts(batch)
    if jumps is not None:
        # The token before a continuation's first token in the row belongs to another sample: take
        # the prediction from its shared prompt's last token instead (a few rows of logits).
        first, src = jumps
        picked = token_logprobs(logits.reshape(-1, logits.shape[-1])[src], batch.input_ids.reshape(-1)[first],
                                temperature)
        lp = lp.reshape(-1).index_put((first,), picked).reshape(lp.shape)
    if not with_entropy:
        return lp, None
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        scaled = logits[:, :-1].float() / temperature
        ent = torch.nn.functional.pad(entropy_from_logits(scaled), (1, 0))
        if jumps is not None:
            first, src = jumps
            fixed = entropy_from_logits(logits.reshape(-1, logits.shape[-1])[src].float() / temperature)
            ent = ent.reshape(-1).index_put((first,), fixed).reshape(ent.shape)
    return lp, ent


def predicting_positions(batch: PackedBatch) -> torch.Tensor:
    """`(rows * seq,)`: for each flat position, the flat position whose output predicts its token: the one
    before it, or for a continuation's first token its shared prompt's last token (`continuation_starts`).
    A row's first position predicts nothing; it points at itself."""
    rows, seq = batch.input_ids.shape
    src = torch.arange(rows * seq, device=batch.input_ids.device) - 1
    src[::seq] += 1
    if (jumps := continuation_starts(batch)) is not None:
        first, prompt_last = jumps
        src[first] = prompt_last
    return src


def chunked_causal_forward(
    model, head: ChunkedHead, batch: PackedBatch, temperature: float, with_entropy: bool, entropy_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`causal_forward` through the chunked head (models/chunked_head.py): the model runs its own forward
    (so a backend's hooks gather and reduce its parameters, see `head_scores`), and a hook on its output
    layer takes the final hidden states, computes the token log-probs (and entropies) from them a chunk of
    tokens at a time, and hands the layer an empty slice, so the model's own logits are `(rows, 0, vocab)`."""
    rows, seq = batch.input_ids.shape
    src = predicting_positions(batch)
    out: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def run_head(module, args):
        hidden = args[0]
        flat = hidden.reshape(rows * seq, hidden.shape[-1])[src]
        out.append(chunked_token_stats(flat, module.weight, module.bias, batch.input_ids.reshape(-1), head.fn,
                                       temperature, head.chunk_tokens, with_entropy))
        return (hidden[:, :0],)

    layer = _unwrap(model).get_output_embeddings()
    hook = layer.register_forward_pre_hook(run_head)
    try:
        logits = model(**model_inputs(model, batch), use_cache=False).logits
    finally:
        hook.remove()
    lp, ent = out[0]
    if hasattr(layer.weight, "ds_status"):
        # DeepSpeed ZeRO-3 runs its hooks around the output layer's backward (gather, then release and
        # account for the layer) only when the layer's output reaches the loss: let it, adding 0.
        lp = lp + logits.sum()
    unpredicted = (src == torch.arange(rows * seq, device=src.device)).view(rows, seq)  # 0, as the full path
    lp = lp.view(rows, seq).masked_fill(unpredicted, 0.0)
    if ent is None:
        return lp, None
    return lp, (ent if entropy_grad else ent.detach()).view(rows, seq).masked_fill(unpredicted, 0.0)


def causal_logprobs(model, batch: PackedBatch) -> torch.Tensor:
    """Token log-probs `(rows, seq)` at temperature 1 (see `causal_forward`)."""
    return causal_forward(model, batch)[0]


def _segment_extreme(seg_ids: torch.Tensor, n: int, reduce: str) -> torch.Tensor:
    flat = seg_ids.reshape(-1)
    idx = torch.arange(flat.numel(), device=flat.device)
    out = torch.full((n,), -1, dtype=torch.long, device=flat.device)
    valid = (flat >= 0) & (flat < n)
    return out.scatter_reduce(0, flat[valid], idx[valid], reduce=reduce, include_self=False)


def segment_last_index(seg_ids: torch.Tensor, n: int) -> torch.Tensor:
    """Flat index (into `seg_ids.view(-1)`) of the last token of each segment 0..n-1."""
    return _segment_extreme(seg_ids, n, "amax")


def segment_first_index(seg_ids: torch.Tensor, n: int) -> torch.Tensor:
    """Flat index (into `seg_ids.view(-1)`) of the first token of each segment 0..n-1."""
    return _segment_extreme(seg_ids, n, "amin")


def segment_sum(values: torch.Tensor, seg_ids: torch.Tensor, n: int) -> torch.Tensor:
    """`(n,)`: the sum of `values` `(rows, seq)` over the tokens of each segment 0..n-1 (segments from
    n on, shared prompts, are left out)."""
    flat, seg = values.reshape(-1), seg_ids.reshape(-1)
    valid = (seg >= 0) & (seg < n)
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, seg[valid], flat[valid])


def head_scores(model, batch: PackedBatch) -> torch.Tensor:
    """`(rows, seq)`: the scalar `score` head of a sequence-classification model at every token.

    The model runs its own forward, called on the module the backend trains (an FSDP2 root, a
    DeepSpeed engine, a peft wrapper): their hooks gather sharded parameters before the forward and
    reduce gradients after the backward, and calling the backbone and head directly would skip them.
    That forward applies the head to every token and then pools one position per row, which packing
    breaks, so the per-token scores are read from the head's output as it runs."""
    scores: list[torch.Tensor] = []
    hook = _unwrap(model).score.register_forward_hook(lambda _module, _args, out: scores.append(out))
    try:
        model(**model_inputs(model, batch), use_cache=False)
    finally:
        hook.remove()
    return scores[0].squeeze(-1).float()


def reward_scores(model, batch: PackedBatch) -> torch.Tensor:
    """`(n_samples,)` scalar reward of each sample: the score head at the sample's last token."""
    scores = head_scores(model, batch)
    return scores.reshape(-1)[segment_last_index(batch.seg_ids, batch.n_samples)]


def token_values(model, batch: PackedBatch) -> torch.Tensor:
    """`(rows, seq)` critic values aligned with the actions: position t holds V(tokens < t), the
    score head on the hidden state of token t - 1 (position 0 gets 0), like `gather_logprobs`."""
    return torch.nn.functional.pad(head_scores(model, batch)[:, :-1], (1, 0))


def sequence_logps(model, batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-prob of each sample's target tokens `(n,)`, target-token count `(n,)`)."""
    lp = causal_logprobs(model, batch)
    sums = segment_sum(lp * batch.loss_mask, batch.seg_ids, batch.n_samples)
    lens = segment_sum(batch.loss_mask, batch.seg_ids, batch.n_samples)
    return sums, lens
