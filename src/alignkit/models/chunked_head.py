"""Token log-probs and entropies through a causal LM's output layer, a chunk of tokens at a time.

Computed from all logits at once, the `(tokens, vocab)` block exists in fp32 and autograd keeps it
until the backward: 9.3 GiB at a 152k vocabulary and 8 x 2048 tokens, and with logsumexp's exponentials
and the gradient the step peaks at about 4.2 times that (bench/bench_logprobs.py). Here only a
`(chunk, vocab)` block exists at a time. The forward keeps two numbers per
token (the log-normaliser and the entropy); the backward recomputes each chunk's logits, turns them in
place into their gradient, and adds that chunk's part of the gradients of the hidden states, the
output layer's weight and its bias.

Memory, per chunk of C tokens and a vocabulary of V, in blocks of C x V: the forward holds two fp32
blocks (the logits, their exponentials), the backward two, and a third when the logits are soft-capped;
a model whose dtype is not fp32 adds one block of its dtype in each. The weight's gradient is summed in
fp32 over the chunks (in the weight's own buffer for an fp32 model).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class HeadFn:
    """What a model's forward does to its output layer's product, in the model's dtype and in this order:
    `logits = softcap * tanh(scale * (h @ W.T + b) / softcap)` (each step only where it is set)."""

    scale: float = 1.0
    """Multiplies the product (Cohere's `logit_scale`, Granite's 1 / `logits_scaling`)."""
    softcap: float | None = None
    """Gemma 2/3's `final_logit_softcapping`."""

    def apply_(self, lin: torch.Tensor) -> torch.Tensor:
        """The logits from the output layer's product `lin` `(..., vocab)`, computed in place."""
        if self.scale != 1.0:
            lin.mul_(self.scale)
        if self.softcap is not None:
            lin.div_(self.softcap).tanh_().mul_(self.softcap)
        return lin


def _float_logits(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, head: HeadFn,
                  temperature: float) -> torch.Tensor:
    """`(c, vocab)` fp32: the model's logits of hidden states `h` `(c, hidden)`, divided by the temperature.
    A fresh buffer the caller may overwrite."""
    z = head.apply_(F.linear(h, weight, bias)).float()
    return z.div_(temperature) if temperature != 1.0 else z


def _logit_grad(h, weight, bias, targets, lse, ent, g_lp, g_ent, head: HeadFn, temperature: float) -> torch.Tensor:
    """`(c, vocab)` fp32: the gradient of the loss with respect to the output layer's product `h @ W.T + b`,
    given the gradients `g_lp`, `g_ent` `(c,)` (either may be None) of the chunk's log-probs and entropies.

    With z the scaled logits and p = softmax(z): d log p_t / dz_j = [j = t] - p_j, and
    dH / dz_j = -p_j (log p_j + H)."""
    lin = F.linear(h, weight, bias)
    if head.scale != 1.0:
        lin.mul_(head.scale)
    if head.softcap is not None:
        lin.div_(head.softcap).tanh_()  # kept: tanh' = 1 - tanh^2
        log_p = (lin * head.softcap).float()
    else:
        log_p, lin = lin.float(), None  # the same buffer when the model is fp32
    if temperature != 1.0:
        log_p.div_(temperature)
    log_p.sub_(lse[:, None])
    p = log_p.exp()
    if g_ent is not None:
        grad = log_p.add_(ent[:, None]).mul_(g_ent[:, None])
        if g_lp is not None:
            grad.add_(g_lp[:, None])
        grad.mul_(p).neg_()
        del p
    else:
        del log_p
        grad = p.mul_(-g_lp[:, None])
    if g_lp is not None:
        grad.scatter_add_(1, targets[:, None], g_lp[:, None])
    factor = head.scale / temperature
    if factor != 1.0:
        grad.mul_(factor)
    if lin is not None:
        grad.mul_(lin.square_().neg_().add_(1.0))
    return grad


def _chunk_stats(h, weight, bias, targets, head: HeadFn, temperature: float, with_entropy: bool):
    """(log-normaliser, log-prob of the target, entropy or None), each `(c,)` fp32, of one chunk."""
    shifted = _float_logits(h, weight, bias, head, temperature)
    top = shifted.amax(-1, keepdim=True)
    shifted.sub_(top)  # as logsumexp shifts: every exponent <= 0
    e = shifted.exp()
    total = e.sum(-1)
    log_total = total.log()
    lp = shifted.gather(-1, targets[:, None]).squeeze(-1) - log_total
    # H = log sum e - sum(e * shifted) / sum e: entropy_from_logits' shifted form.
    ent = log_total - e.mul_(shifted).sum(-1) / total if with_entropy else None
    return top.squeeze(-1) + log_total, lp, ent


def _chunk_backward(h, weight, bias, targets, lse, ent, g_lp, g_ent, head: HeadFn, temperature: float,
                    gh, gw, gb) -> None:
    """Add one chunk's part to the gradients of the hidden states (its rows of `gh`), the weight (`gw`,
    fp32) and the bias (`gb`, fp32); a None gradient is not wanted."""
    grad = _logit_grad(h, weight, bias, targets, lse, ent, g_lp, g_ent, head, temperature)
    grad_lowp = grad.to(weight.dtype)
    if gh is not None:
        torch.mm(grad_lowp, weight, out=gh)
    if gw is not None:
        _add_product(gw, grad, grad_lowp, h)
    if gb is not None:
        gb += grad.sum(0)


def _add_product(acc: torch.Tensor, grad: torch.Tensor, grad_lowp: torch.Tensor, h: torch.Tensor) -> None:
    """`acc += grad.T @ h` in fp32, where the product must not be rounded to a low-precision model's dtype
    before it is summed over chunks (that biases training). `grad_lowp` is `grad` in the model's dtype."""
    if h.dtype == torch.float32:
        acc.addmm_(grad.T, h)
    elif acc.is_cuda:
        torch.addmm(acc, grad_lowp.T, h, out_dtype=torch.float32, out=acc)
    else:
        acc.addmm_(grad.T, h.float())


def _gathered(*params: torch.Tensor | None) -> contextlib.AbstractContextManager:
    """DeepSpeed ZeRO-3 keeps only a shard of each parameter outside the forward and backward of the module
    that owns it. This backward reads the output layer's weight: ZeRO-3's hook before that layer's backward
    has normally gathered it (models/forward.py lets the layer's output reach the loss); where autograd
    ran this backward first, gather it here (a collective, which every worker's backward makes). Other
    parameters: nothing to do."""
    partitioned = [p for p in params if p is not None and hasattr(p, "ds_status")]
    if not partitioned:
        return contextlib.nullcontext()
    from deepspeed import zero
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    # A tied weight may still be whole (the embedding holds it); gathering it again would clash.
    missing = [p for p in partitioned if p.ds_status != ZeroParamStatus.AVAILABLE]
    return zero.GatheredParameters(missing) if missing else contextlib.nullcontext()


def _rows(t: torch.Tensor | None, part: slice) -> torch.Tensor | None:
    return None if t is None else t[part]


class _ChunkedLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, head: HeadFn, temperature: float, chunk: int,
                with_entropy: bool):
        n = hidden.shape[0]
        lse = torch.empty(n, dtype=torch.float32, device=hidden.device)
        lp = torch.empty_like(lse)
        ent = torch.empty_like(lse) if with_entropy else None
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            lse[a:b], lp[a:b], e = _chunk_stats(hidden[a:b], weight, bias, targets[a:b], head, temperature,
                                                with_entropy)
            if ent is not None:
                ent[a:b] = e
        ctx.set_materialize_grads(False)  # an entropy only logged sends no gradient: skip its term
        ctx.save_for_backward(hidden, weight, bias, targets, lse, ent)
        ctx.head, ctx.temperature, ctx.chunk = head, temperature, chunk
        return lp, ent

    @staticmethod
    def backward(ctx, g_lp, g_ent):
        hidden, weight, bias, targets, lse, ent = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        none = (None,) * 5
        if g_lp is None and g_ent is None:
            return None, None, None, *none
        g_lp = None if g_lp is None else g_lp.float()
        g_ent = None if g_ent is None else g_ent.float()
        with _gathered(weight, bias):
            gh = torch.empty_like(hidden) if need_h else None
            gw = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
            gb = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
            for a in range(0, hidden.shape[0], ctx.chunk):
                b = min(a + ctx.chunk, hidden.shape[0])
                part = slice(a, b)
                _chunk_backward(hidden[part], weight, bias, targets[part], lse[part], _rows(ent, part),
                                _rows(g_lp, part), _rows(g_ent, part), ctx.head, ctx.temperature,
                                _rows(gh, part), gw, gb)
            gw = None if gw is None else gw.to(weight.dtype)
            gb = None if gb is None else gb.to(bias.dtype)
        return gh, gw, gb, *none


def chunked_token_stats(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                        targets: torch.Tensor, head: HeadFn, temperature: float, chunk: int,
                        with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per token, `log softmax(z)[target]` and (with `with_entropy`) the entropy of softmax(z), each `(n,)`
    fp32, where z = head(hidden @ weight.T + bias) / temperature in fp32, as the full-logits path computes
    them; `chunk` tokens at a time, forward and backward (recomputed). hidden `(n, hidden)`, weight
    `(vocab, hidden)`, bias `(vocab,)` or None, targets `(n,)` long. Differentiable in hidden, weight, bias."""
    return _ChunkedLogProbs.apply(hidden, weight, bias, targets, head, temperature, chunk, with_entropy)
