"""Per-token functions of `(tokens, vocab)` logits, evaluated a chunk of tokens at a time.

A distillation loss over the full vocabulary builds several `(tokens, vocab)` float32 intermediates
(log-softmax of both sides, the mixture, the products), and autograd would keep them all until the
backward pass. `chunked_rows` keeps none: the forward runs the function chunk by chunk without a
graph, and the backward recomputes each chunk with one and writes its gradient into one preallocated
`(tokens, vocab)` tensor, the size of the logits themselves. Peak memory beyond the inputs: the
gradient plus one chunk's intermediates.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

RowFn = Callable[..., Tensor]


def _each_chunk(fn: RowFn, chunk: int, x: Tensor, consts: tuple[Tensor, ...]) -> Tensor:
    """`fn` on consecutive chunks of rows, concatenated (once on no rows, for the output's shape)."""
    return torch.cat([fn(x[i : i + chunk], *(c[i : i + chunk] for c in consts))
                      for i in range(0, max(len(x), 1), chunk)])


class _Chunked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fn: RowFn, chunk: int, x: Tensor, *consts: Tensor) -> Tensor:
        ctx.fn, ctx.chunk = fn, chunk
        ctx.save_for_backward(x, *consts)
        return _each_chunk(fn, chunk, x, consts)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, *consts = ctx.saved_tensors
        grad = torch.empty_like(x)
        for i in range(0, len(x), ctx.chunk):
            with torch.enable_grad():
                part = x[i : i + ctx.chunk].detach().requires_grad_()
                out = ctx.fn(part, *(c[i : i + ctx.chunk] for c in consts))
                (grad[i : i + ctx.chunk],) = torch.autograd.grad(out, part, grad_out[i : i + ctx.chunk])
        return None, None, grad, *([None] * len(consts))


def chunked_rows(fn: RowFn, x: Tensor, *consts: Tensor, chunk: int) -> Tensor:
    """`fn(x, *consts)` computed `chunk` rows at a time; differentiable in `x` only.

    fn: rows -> per-row outputs `(n, ...)`, row i depending only on row i of each argument. x `(N, V)`
    (the student's logits); consts: tensors with N leading rows (the teacher's side, targets), treated
    as constants. Returns `(N, ...)`, equal to `fn(x, *consts)` with the same gradient with respect to
    `x`; outputs that feed nothing (metrics) get a zero gradient, so they cost only their
    recomputation."""
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    if not torch.is_grad_enabled() or not x.requires_grad:
        with torch.no_grad():
            return _each_chunk(fn, chunk, x, consts)
    return _Chunked.apply(fn, chunk, x, *consts)


def rows_per_chunk(vocab: int, budget: int = 1 << 26) -> int:
    """Rows whose `(rows, vocab)` intermediates hold at most `budget` elements (default 64M: 256 MiB in
    float32), at least one."""
    return max(1, budget // max(vocab, 1))
