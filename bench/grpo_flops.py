"""Useful FLOPs of a GRPO step and the matmul peak they are measured against (MFU): fp32 by default,
bf16 for bench/gpu.

The formulas (matmul parameters per token N, causal attention, generation with one prefill per
distinct prompt, training as a reference forward plus a policy forward and backward, padding never
counted) are written out at the top of bench_grpo.py and in bench/README.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def model_dims(model_dir: Path) -> dict:
    """Matmul parameters per token (layers and LM head), layers and attention width of the model."""
    cfg = json.loads((model_dir / "config.json").read_text())
    d, L, v = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or d // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    per_layer = d * q + 2 * d * kv + q * d + 3 * d * cfg["intermediate_size"]
    return {"hidden": d, "layers": L, "vocab": v, "attn_width": q, "n_layers_params": L * per_layer,
            "n_head_params": d * v, "n_matmul": L * per_layer + d * v}


def forward_flops(dims: dict, tokens: int) -> float:
    """One causal forward over `tokens` real tokens: 2 N T + 4 L d sum_{i<=T} i."""
    return 2 * dims["n_matmul"] * tokens + 2 * dims["layers"] * dims["attn_width"] * tokens * (tokens + 1)


def step_flops(dims: dict, prompt_lens: list[int], response_lens: list[int], group: int) -> dict:
    """Useful FLOPs of one GRPO step from its real prompt and response lengths (one entry per completion,
    prompt-major in groups of `group`). See bench_grpo.py's docstring for the formula."""
    n, la = dims["n_matmul"], dims["layers"] * dims["attn_width"]
    gen = sum(forward_flops(dims, p) for p in prompt_lens[::group])  # prefill, once per distinct prompt
    for p, k in zip(prompt_lens, response_lens, strict=True):
        # decode steps feed tokens p+1 .. p+k-1 (the last sampled token is never fed back)
        gen += 2 * n * max(k - 1, 0) + 4 * la * sum(range(p + 1, p + k))
    fwd = sum(forward_flops(dims, p + k) for p, k in zip(prompt_lens, response_lens, strict=True))
    return {"generate": gen, "reference": fwd, "policy": 3 * fwd, "total": gen + 4 * fwd}


def matmul_peak(threads: int, sizes=(1024, 2048), repeats: int = 5, dtype: str = "float32") -> float:
    """Best square-matmul rate in GFLOP/s (random `dtype` operands) with `threads` threads (CPU), or on
    the GPU. On the CPU each repeat is timed by the wall clock and by this process's CPU time / threads,
    and the shorter counts, so that time slices lost to other processes on a shared machine do not lower
    the peak."""
    import torch

    torch.set_num_threads(threads)
    cuda = torch.cuda.is_available()
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device="cuda" if cuda else "cpu", dtype=getattr(torch, dtype))
        b = torch.randn_like(a)
        a @ b
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            t, c = time.perf_counter(), time.process_time()
            a @ b
            if cuda:
                torch.cuda.synchronize()
                took = time.perf_counter() - t
            else:
                took = min(time.perf_counter() - t, (time.process_time() - c) / threads)
            best = max(best, 2 * n**3 / took / 1e9)
    return best
