"""Whether a causal LM's log-probs may be computed by the chunked head (models/chunked_head.py), and with
what logit function: decided once per model when it is loaded, by a probe that compares the chunked
head's logits with the model's own."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alignkit.models.chunked_head import HeadFn

log = logging.getLogger("alignkit")

# Where `enable_chunked_logprobs` leaves its verdict on the transformers model (not saved with it).
_ATTR = "_alignkit_chunked_head"
_PROBE_TOKENS = 16


@dataclass(frozen=True)
class ChunkedHead:
    """How `causal_forward` computes a model's log-probs without its full logits."""

    fn: HeadFn
    """The model's logit function after its output layer's product."""
    chunk_tokens: int
    """Tokens whose `(chunk, vocab)` logits exist at a time."""


def head_fn(config) -> HeadFn:
    """The transforms the model's forward applies after its output layer, read from its config (the
    probe confirms them): a multiplier (Cohere `logit_scale`, Granite 1 / `logits_scaling`, Falcon-H1
    `lm_head_multiplier`) and Gemma's soft-capping."""
    text = config.get_text_config()
    scale = 1.0
    for name in ("logit_scale", "lm_head_multiplier"):
        if getattr(text, name, None) is not None:
            scale *= float(getattr(text, name))
    if getattr(text, "logits_scaling", None):
        scale /= float(text.logits_scaling)
    softcap = getattr(text, "final_logit_softcapping", None)
    return HeadFn(scale=scale, softcap=float(softcap) if softcap else None)


@torch.no_grad()
def mismatch(model, fn: HeadFn) -> str:
    """Why the chunked head would not compute `model`'s logits ('' when it does): the output layer must be
    a plain linear layer (not adapted by LoRA), called once on the hidden state of every position, and
    `fn` of its product must equal the logits the model returns, on a short probe sequence."""
    head = model.get_output_embeddings()
    if not _plain_linear(head):
        return f"its output layer is a {type(head).__name__}, not a plain Linear"
    vocab = model.get_input_embeddings().num_embeddings
    ids = (torch.arange(_PROBE_TOKENS, device=head.weight.device) * 7919 % vocab)[None]
    inputs: list[tuple] = []
    hook = head.register_forward_pre_hook(lambda _module, args: inputs.append(args))
    was_training = model.training
    model.eval()
    try:
        logits = model(input_ids=ids, use_cache=False).logits
    finally:
        hook.remove()
        model.train(was_training)
    if len(inputs) != 1 or len(inputs[0]) != 1 or inputs[0][0].shape[:-1] != ids.shape:
        return "its forward does not apply the output layer once to every position"
    ours = fn.apply_(F.linear(inputs[0][0], head.weight, head.bias)).float()
    theirs = logits.float()
    # The same operations in the same dtype: equal up to the matmul's summation order.
    tol = 8 * torch.finfo(head.weight.dtype).eps * (1.0 + float(theirs.abs().max()))
    if ours.shape != theirs.shape or float((ours - theirs).abs().max()) > tol:
        return f"its logits are not {fn} of its output layer"
    return ""


def enable_chunked_logprobs(model, chunk_tokens: int) -> None:
    """Let `causal_forward` compute the log-probs of `model` (a transformers causal LM, before any wrapper)
    `chunk_tokens` tokens at a time; 0 keeps the full `(tokens, vocab)` logits. A model whose logits the
    chunked head cannot reproduce keeps the full logits too, with a log line saying why."""
    setattr(model, _ATTR, None)
    if chunk_tokens <= 0:
        return
    fn = head_fn(model.config)
    if why := mismatch(model, fn):
        log.info("log-probs from full logits (--model.logprob_chunk_tokens ignored): %s", why)
        return
    setattr(model, _ATTR, ChunkedHead(fn, chunk_tokens))


def chunked_head(model) -> ChunkedHead | None:
    """The chunked head `enable_chunked_logprobs` set on `model` (the transformers model), or None: full logits.
    None too when LoRA has wrapped the output layer since (a target named like it): its adapter is not in
    the layer's weight."""
    head = getattr(model, _ATTR, None)
    return head if head is not None and _plain_linear(model.get_output_embeddings()) else None


def _plain_linear(module) -> bool:
    return isinstance(module, torch.nn.Linear) and not hasattr(module, "base_layer")
