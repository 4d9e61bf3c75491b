"""Calibrate the cost model on the machine at hand, and predict a step time with it.

``calibrate`` times real kernels (a matmul, scaled_dot_product_attention, a large copy) and a
tiny Llama built locally from ``transformers.LlamaConfig`` with random weights (forward,
forward+backward, one decode step with a KV cache), then fits the efficiency factors the cost
model divides by: achieved fraction of peak FLOP/s (matmuls, attention), of memory bandwidth,
and a fixed overhead per forward pass (what is left of the tiny model's times once their FLOPs and
bytes are paid for, fitted to the relative errors). Collective efficiency needs several devices and
keeps its default.

On CPU the kernels run in fp32, on a GPU in bf16. Nothing is downloaded.

``predict_step_time`` predicts an ``alignkit rl`` step; ``alignkit plan --calibrate --report``
compares it with measured steps of real runs (calibration_runs.py).
"""

from __future__ import annotations

import socket
import statistics
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from alignkit.errors import ConfigError
from alignkit.planner.cost import decode_flops, forward_flops
from alignkit.planner.efficiency import Efficiency
from alignkit.planner.graph import Workload, build_graph
from alignkit.planner.hardware import ClusterSpec, DeviceKind
from alignkit.planner.models import ModelSpec, resolve_model, spec_from_config

# Problem sizes: "tiny" for tests (well under a second on a CPU), "small" for a real calibration.
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(matmul=256, sdpa_seq=128, copy_mb=16, hidden=64, layers=2, heads=4, batch=2, seq=32, decode=4),
    "small": dict(matmul=1024, sdpa_seq=512, copy_mb=256, hidden=256, layers=4, heads=8, batch=4, seq=128, decode=16),
    "gpu": dict(matmul=8192, sdpa_seq=4096, copy_mb=2048, hidden=1024, layers=8, heads=16, batch=8, seq=1024, decode=32),
}  # fmt: skip


@dataclass(frozen=True)
class Measurement:
    """One timed operation and what the cost model says it does."""

    name: str
    kind: str  # "matmul" | "attention" | "memory" | "model"
    seconds: float
    matmul_flops: float = 0.0
    attention_flops: float = 0.0
    bytes: float = 0.0  # memory traffic the cost model charges
    passes: int = 1  # forward passes (for the per-pass overhead)


def _timeit(fn, repeats: int, sync) -> float:
    fn()  # warm-up: allocations, kernel selection
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(
    size: str = "small", repeats: int = 3, device: str | None = None, threads: int | None = None
) -> list[Measurement]:
    """Time the kernels and the tiny model on ``device`` ("cpu", "cuda"; default: cuda if
    available). ``threads`` sets torch's CPU threads for the measurement (restored after): on a
    shared machine fewer threads than cores avoids timing the contention instead of the kernel."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _measure(size, repeats, device)
    finally:
        torch.set_num_threads(before)


def _measure(size: str, repeats: int, device: str | None) -> list[Measurement]:
    import torch
    import torch.nn.functional as F

    if size not in SIZES:
        raise ConfigError(f"unknown calibration size {size!r}; valid: {sorted(SIZES)}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    esize = torch.finfo(dtype).bits // 8
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    z = SIZES[size]
    out: list[Measurement] = []
    with torch.no_grad():
        n = z["matmul"]
        a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
        out.append(
            Measurement(f"matmul {n}x{n}", "matmul", _timeit(lambda: a @ b, repeats, sync), 2.0 * n**3)
        )
        heads, s, hd = 8, z["sdpa_seq"], 64
        q, k, v = (torch.randn(1, heads, s, hd, device=dev, dtype=dtype) for _ in range(3))
        t = _timeit(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), repeats, sync)
        # Causal: s(s+1)/2 query-key pairs, 4 * heads * head_dim FLOPs each (see cost.py).
        out.append(Measurement(f"sdpa causal seq {s}", "attention", t, 0.0, 2.0 * heads * hd * s * (s + 1)))
        numel = z["copy_mb"] * 2**20 // esize
        x = torch.empty(numel, device=dev, dtype=dtype)
        y = torch.empty_like(x)
        out.append(Measurement(f"copy {z['copy_mb']} MiB", "memory", _timeit(lambda: y.copy_(x), repeats, sync),
                               bytes=2.0 * numel * esize))  # fmt: skip
    out += _measure_tiny_llama(z, repeats, dev, dtype, esize, sync)
    return out


def tiny_llama_config(size: str = "small"):
    from transformers import LlamaConfig

    z = SIZES[size]
    return LlamaConfig(
        hidden_size=z["hidden"], intermediate_size=z["hidden"] * 8 // 3, num_hidden_layers=z["layers"],
        num_attention_heads=z["heads"], num_key_value_heads=max(1, z["heads"] // 2), vocab_size=1024,
        max_position_embeddings=4 * z["seq"] + z["decode"] + 8,
    )  # fmt: skip


def _measure_tiny_llama(z, repeats, dev, dtype, esize, sync) -> list[Measurement]:
    import torch
    from transformers import LlamaForCausalLM

    cfg = tiny_llama_config(next(k for k, v in SIZES.items() if v is z))
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(device=dev, dtype=dtype)
    spec = spec_from_config(cfg, name="tiny-llama")
    batch, seq = z["batch"], z["seq"]
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), device=dev)
    mm, attn = forward_flops(spec, batch, seq)
    out = []
    with torch.no_grad():
        t = _timeit(lambda: model(ids, use_cache=False), repeats, sync)
    out.append(Measurement("tiny llama forward", "model", t, mm, attn, esize * spec.n_params, 1))

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        model(ids, labels=ids, use_cache=False).loss.backward()

    t = _timeit(fwd_bwd, repeats, sync)
    out.append(
        Measurement("tiny llama forward+backward", "model", t, 3 * mm, 3 * attn, 3 * esize * spec.n_params, 2)
    )
    model.zero_grad(set_to_none=True)

    steps = z["decode"]
    with torch.no_grad():
        nxt = torch.randint(0, cfg.vocab_size, (batch, 1), device=dev)

        def generate(n_steps: int):
            pkv = model(ids, use_cache=True).past_key_values
            for _ in range(n_steps):
                pkv = model(nxt, past_key_values=pkv, use_cache=True).past_key_values

        # Decode time = (prefill + steps) - prefill: independent of the cache API's version.
        t_pre = _timeit(lambda: generate(0), repeats, sync)
        t = max(_timeit(lambda: generate(steps), repeats, sync) - t_pre, 1e-9) / steps
    ctx = seq + (steps + 1) / 2
    dmm, dattn = decode_flops(spec, batch, ctx)
    kv = batch * ctx * spec.n_layers * 2 * spec.kv_dim * esize
    out.append(
        Measurement("tiny llama decode step", "model", t, dmm, dattn, esize * spec.matmul_params + kv, 1)
    )
    return out


def _ideal(m: Measurement, device: DeviceKind, eff: Efficiency) -> float:
    """The cost model's time for ``m`` without the fixed overhead."""
    flop_t = m.matmul_flops / (device.peak_flops * eff.compute) + m.attention_flops / (
        device.peak_flops * eff.attention
    )
    return max(flop_t, m.bytes / (device.hbm_bandwidth * eff.memory))


def fit(measurements: list[Measurement], device: DeviceKind) -> Efficiency:
    """Efficiency factors from measurements (medians, so one noisy timing does not decide)."""

    def median(kind: str, rate) -> float | None:
        vals = [rate(m) for m in measurements if m.kind == kind and m.seconds > 0]
        return statistics.median(vals) if vals else None

    base = Efficiency()
    compute = median("matmul", lambda m: m.matmul_flops / m.seconds / device.peak_flops) or base.compute
    attention = (
        median("attention", lambda m: m.attention_flops / m.seconds / device.peak_flops) or base.attention
    )
    memory = median("memory", lambda m: m.bytes / m.seconds / device.hbm_bandwidth) or base.memory
    clamp = lambda v: min(max(v, 1e-4), 1.5)  # noqa: E731
    eff = Efficiency(clamp(compute), clamp(attention), clamp(memory), base.comm, 0.0, device.name)
    # The overhead per pass that minimises the squared *relative* errors of the tiny model's times
    # (least squares in closed form). Relative, because a fixed cost per pass matters most where a
    # pass does least work (a decode step); a median of residuals took the forward's, which is
    # mostly small-matmul inefficiency, and overestimated short decode-bound steps several-fold.
    models = [m for m in measurements if m.kind == "model" and m.seconds > 0]
    if not models:
        return replace(eff, overhead_s=base.overhead_s)
    num = sum(m.passes * (m.seconds - _ideal(m, device, eff)) / m.seconds**2 for m in models)
    den = sum(m.passes**2 / m.seconds**2 for m in models)
    return replace(eff, overhead_s=max(0.0, num / den))


def calibrate(
    device: DeviceKind,
    size: str = "small",
    repeats: int = 3,
    torch_device: str | None = None,
    threads: int | None = None,
):
    """Measure and fit. Returns (Efficiency, extra) where extra holds the raw measurements and
    the fitted model's relative error on each, for the calibration file."""
    ms = measure(size, repeats, torch_device, threads)
    eff = fit(ms, device)
    eff = replace(eff, source=f"calibrated on {socket.gethostname()} at {time.strftime('%Y-%m-%d %H:%M')}")
    rows: list[dict[str, Any]] = []
    for m in ms:
        pred = _ideal(m, device, eff) + (eff.overhead_s * m.passes if m.kind == "model" else 0.0)
        rows.append(
            {**asdict(m), "predicted_seconds": pred, "relative_error": (pred - m.seconds) / m.seconds}
        )
    return eff, {"size": size, "threads": threads, "measurements": rows}


def detect_device_kind() -> str:
    """The built-in device kind matching the local accelerator, else "cpu"."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(0).lower()
    mem = torch.cuda.get_device_properties(0).total_memory
    if "h200" in name:
        return "h200"
    if "h100" in name:
        return "h100"
    if "a100" in name:
        return "a100-80g" if mem > 50 * 2**30 else "a100-40g"
    if "l40s" in name:
        return "l40s"
    raise ConfigError(f"no built-in device kind for {name!r}; pass --device NAME with --device-table FILE")


def predict_step_time(
    model_config,
    workload: Workload,
    calibration: Efficiency,
    *,
    algo: str = "grpo",
    cluster: ClusterSpec | None = None,
    device: DeviceKind | None = None,
    reference: bool = True,
    reward_model: bool = False,
) -> float:
    """Predicted seconds of one ``alignkit rl`` iteration with every role in one process (the
    local executor): all calls colocated on ``cluster`` (default: one device of the
    calibration's kind), with the best single layout, as the planner's colocated baseline.

    ``model_config``: a ModelSpec, a named size, a config folder, or a transformers config object
    (the same architecture for every role, as in the tiny-model runs). PPO adds a critic.
    """
    from alignkit.planner.baselines import colocated
    from alignkit.planner.hardware import get_device
    from alignkit.planner.problem import build_problem

    if isinstance(model_config, ModelSpec):
        spec = model_config
    elif isinstance(model_config, str):
        spec = resolve_model(model_config)
    else:
        spec = spec_from_config(model_config)
    if cluster is None:
        dev = device or get_device(calibration.device or "cpu")
        cluster = ClusterSpec(1, 1, dev)
    graph = build_graph(
        algo, spec, workload,
        critic=spec if algo == "ppo" else None,
        reference=spec if reference else None,
        reward=spec if reward_model else None,
    )  # fmt: skip
    problem = build_problem(graph, cluster, calibration)
    base = colocated(problem)
    if base.result is None:
        raise ConfigError(f"the run does not fit on {cluster.describe()}: {base.note}")
    return base.result.makespan
