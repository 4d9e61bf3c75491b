"""The cost model: time and memory of one call under one strategy, from first principles.

Time = FLOPs / achieved FLOP/s, or bytes / achieved bandwidth, whichever binds, plus
communication and pipeline bubbles. Prefill, inference and training are compute bound; decode
reads every weight and the whole KV cache once per generated token and is memory bound.

Memory per device (mixed-precision Adam, as in the ZeRO paper): bf16 weights (2 bytes/param),
bf16 gradients (2), fp32 master weights + Adam m + v (12); ZeRO-1 shards the 12, ZeRO-2 also the
gradients, ZeRO-3 also the weights, each over the data-parallel group.

Everything here is a pure function of frozen inputs, and ``call_cost`` is cached: the search
asks for the same (call, mesh size, strategy) many times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from alignkit.planner.efficiency import Efficiency
from alignkit.planner.graph import Workload
from alignkit.planner.hardware import GIB, ClusterSpec
from alignkit.planner.models import ModelSpec
from alignkit.planner.strategy import ParallelStrategy

BF16 = 2  # bytes
ADAM_STATE_BYTES = 12  # fp32 master weights + Adam m + v, per parameter
USABLE_MEMORY = 0.9  # of device memory: the rest goes to the CUDA context and fragmentation
# Activation bytes per token per layer, Korthikanti et al. 2022 ("Reducing activation
# recomputation"), with flash attention (no s^2 term) and sequence parallelism (all / tp).
ACT_BYTES_PER_TOKEN_LAYER = 34
PREFILL_CHUNK_TOKENS = 8192  # engines prefill in chunks of about this many tokens
DP_OVERLAP = 0.8  # fraction of a train step's compute that data-parallel traffic can hide behind


# ---------------------------------------------------------------- FLOPs and bytes


def attention_flops(model: ModelSpec, n_seqs: float, seq_len: float) -> float:
    """Causal self-attention score and value FLOPs of a forward pass over whole sequences.

    Per layer, each (query, key) pair costs 2*hidden for Q.K (head_dim MACs per head, all heads)
    and 2*hidden for the weighted sum of V: 4*hidden. A causal sequence of s tokens has
    s(s+1)/2 pairs, so 2*hidden*s*(s+1) per layer per sequence.
    """
    return 2.0 * model.n_layers * model.hidden * seq_len * (seq_len + 1) * n_seqs


def forward_flops(model: ModelSpec, n_seqs: float, seq_len: float) -> tuple[float, float]:
    """(matmul FLOPs, attention FLOPs) of one forward pass: 2 FLOPs per matmul parameter per
    token, plus the attention term."""
    return 2.0 * model.matmul_params * n_seqs * seq_len, attention_flops(model, n_seqs, seq_len)


def decode_flops(model: ModelSpec, n_seqs: float, context: float) -> tuple[float, float]:
    """(matmul, attention) FLOPs of one decode step: one new token per sequence, attending to
    ``context`` cached keys."""
    return 2.0 * model.matmul_params * n_seqs, 4.0 * model.n_layers * model.hidden * context * n_seqs


def kv_width_per_device(model: ModelSpec, tp: int) -> int:
    """K (or V) width held per device: KV heads split over tp, or replicated when tp > KV heads."""
    return max(model.kv_dim // tp, model.head_dim)


def kv_bytes_per_token_layer(model: ModelSpec, tp: int) -> float:
    return 2 * kv_width_per_device(model, tp) * BF16  # K and V


# ---------------------------------------------------------------- communication


def group_bandwidth(cluster: ClusterSpec, span: int, eff: Efficiency) -> tuple[float, float]:
    """(achieved bytes/s per device, latency per hop) for a group whose devices lie within
    ``span`` consecutive devices of an aligned mesh: NVLink if that stays inside a node."""
    d = cluster.device
    if span <= cluster.devices_per_node:
        return d.intra_node_bandwidth * eff.comm, d.intra_node_latency
    return d.inter_node_bandwidth * eff.comm, d.inter_node_latency


def allreduce_time(nbytes: float, n: int, bw: float, lat: float) -> float:
    """Ring all-reduce: every device sends and receives 2(n-1)/n of the buffer."""
    if n <= 1:
        return 0.0
    return 2.0 * (n - 1) / n * nbytes / bw + 2 * (n - 1) * lat


def allgather_time(nbytes: float, n: int, bw: float, lat: float) -> float:
    """Ring all-gather (or reduce-scatter) of a buffer of ``nbytes`` in total: (n-1)/n of it."""
    if n <= 1:
        return 0.0
    return (n - 1) / n * nbytes / bw + (n - 1) * lat


# ---------------------------------------------------------------- per-call cost


@dataclass(frozen=True)
class CallCost:
    time_s: float
    persistent_bytes: float  # per device: model state kept here between calls if this is its home
    transient_bytes: float  # per device while the call runs: activations, logits, KV cache
    weight_copy_bytes: float  # per device while it runs, if the weights live in another layout
    time_parts: tuple[tuple[str, float], ...]  # seconds by cause, for the report
    memory_parts: tuple[tuple[str, float], ...]  # bytes by cause, for the report
    infeasible: str | None = None  # why it cannot run at all, or None

    @property
    def feasible(self) -> bool:
        return self.infeasible is None


def _stage(model: ModelSpec, s: ParallelStrategy) -> tuple[int, float]:
    """Layers on the busiest pipeline stage, and its share of the model's work."""
    layers = math.ceil(model.n_layers / s.pp)
    return layers, layers / model.n_layers


def _compute_time(mm: float, attn: float, cluster: ClusterSpec, eff: Efficiency) -> float:
    peak = cluster.device.peak_flops
    return mm / (peak * eff.compute) + attn / (peak * eff.attention)


def _gib(x: float) -> str:
    return f"{x / GIB:.1f}"


def _check(kind: str, parts: tuple[tuple[str, float], ...], cluster: ClusterSpec) -> str | None:
    need = sum(v for _, v in parts)
    usable = cluster.device.memory_bytes * USABLE_MEMORY
    if need <= usable:
        return None
    detail = ", ".join(f"{k} {_gib(v)}" for k, v in parts if v > 0)
    return (
        f"{kind} needs {_gib(need)} GiB per device ({detail}) > {_gib(usable)} GiB usable on "
        f"{cluster.device.name} ({USABLE_MEMORY:.0%} of {_gib(cluster.device.memory_bytes)} GiB)"
    )


@cache
def call_cost(
    kind: str,
    model: ModelSpec,
    workload: Workload,
    strategy: ParallelStrategy,
    cluster: ClusterSpec,
    eff: Efficiency,
) -> CallCost:
    """Cost of a ``kind`` call ("generate", "inference", "train") on a mesh of
    ``strategy.size`` devices. ``infeasible`` is set when the call alone (with its model's
    state if this is its home layout) cannot fit in device memory."""
    if kind == "train":
        return _train_cost(model, workload, strategy, cluster, eff)
    if kind == "inference":
        return _inference_cost(model, workload, strategy, cluster, eff)
    if kind == "generate":
        return _generate_cost(model, workload, strategy, cluster, eff)
    raise ValueError(f"unknown call kind {kind!r}")


def _train_cost(
    model: ModelSpec, w: Workload, s: ParallelStrategy, cluster: ClusterSpec, eff: Efficiency
) -> CallCost:
    layers, frac = _stage(model, s)
    h, rc = model.hidden, int(s.recompute)
    seqs_rank = math.ceil(w.n_sequences / w.minibatches / s.dp)
    seqs_mb = math.ceil(seqs_rank / s.micro_batches)
    tokens_mb = seqs_mb * w.seq_len
    # Backward costs twice the forward; recomputation adds one more forward.
    passes = 3 + rc
    mm, attn = forward_flops(model, seqs_mb, w.seq_len)
    compute = _compute_time(mm, attn, cluster, eff) * passes * frac / s.tp
    tp_bw, tp_lat = group_bandwidth(cluster, s.tp, eff)
    # Megatron tensor parallelism: two all-reduces of the layer's activations per forward, two per
    # backward (all-gather + reduce-scatter with sequence parallelism: the same bytes).
    tp_comm = layers * (4 + 2 * rc) * allreduce_time(tokens_mb * h * BF16, s.tp, tp_bw, tp_lat)
    pp_bw, pp_lat = group_bandwidth(cluster, s.size, eff)
    p2p = 2 * (tokens_mb * h * BF16 / pp_bw + pp_lat) if s.pp > 1 else 0.0
    stage_mb = compute + tp_comm + p2p + eff.overhead_s * (2 + rc)
    n_slots = s.micro_batches + s.pp - 1  # 1F1B: pp-1 slots of bubble
    step_compute = n_slots * stage_mb
    # Data-parallel traffic per optimizer step, over the dp group (spans tp*dp devices).
    params_dev = model.n_params * frac / s.tp  # parameters per device before ZeRO sharding
    dp_bw, dp_lat = group_bandwidth(cluster, s.tp * s.dp, eff)
    grads = BF16 * params_dev
    if s.zero == 0:
        dp_comm = allreduce_time(grads, s.dp, dp_bw, dp_lat)
    elif s.zero in (1, 2):  # reduce-scatter gradients, all-gather updated weights
        dp_comm = 2 * allgather_time(grads, s.dp, dp_bw, dp_lat)
    else:  # ZeRO-3 also gathers the weights for every forward and backward of every micro-batch
        gathers = s.micro_batches * (2 + rc)
        dp_comm = (1 + gathers) * allgather_time(grads, s.dp, dp_bw, dp_lat)
    exposed_dp = max(0.0, dp_comm - DP_OVERLAP * step_compute)
    # Adam touches ~28 bytes per local parameter shard (read grads, fp32 master, m, v; write
    # master, m, v and the bf16 copy): memory bound.
    shard = params_dev / (s.dp if s.zero >= 1 else 1)
    optim = 28 * shard / (cluster.device.hbm_bandwidth * eff.memory)
    steps = w.minibatches * w.epochs
    bubble = (s.pp - 1) * stage_mb * steps
    time_parts = (
        ("compute", steps * s.micro_batches * compute),
        ("tp_comm", steps * s.micro_batches * (tp_comm + p2p)),
        ("pp_bubble", bubble),
        ("dp_comm", steps * exposed_dp),
        ("optimizer", steps * optim),
        ("overhead", steps * s.micro_batches * eff.overhead_s * (2 + rc)),
    )
    total = steps * (step_compute + exposed_dp + optim)

    weights = BF16 * params_dev / (s.dp if s.zero == 3 else 1)
    grad_b = BF16 * params_dev / (s.dp if s.zero >= 2 else 1)
    optim_b = ADAM_STATE_BYTES * params_dev / (s.dp if s.zero >= 1 else 1)
    # 1F1B keeps up to pp micro-batches of activations on the first stage.
    in_flight = min(s.micro_batches, s.pp)
    per_token_layer = ACT_BYTES_PER_TOKEN_LAYER * h / s.tp
    if s.recompute:  # keep each layer's input, rebuild one layer at a time in backward
        act = in_flight * tokens_mb * layers * BF16 * h / s.tp + tokens_mb * per_token_layer
    else:
        act = in_flight * tokens_mb * layers * per_token_layer
    # fp32 logits and their gradient over the (tp-split) vocabulary.
    logits = 8.0 * tokens_mb * model.head_out / s.tp
    gather_buf = 2 * BF16 * model.layer_params / s.tp if s.zero == 3 else 0.0  # prefetch 2 layers
    memory_parts = (
        ("weights", weights),
        ("grads", grad_b),
        ("optimizer", optim_b),
        ("activations", act),
        ("logits", logits),
        ("zero3_buffer", gather_buf),
    )
    return CallCost(
        time_s=total,
        persistent_bytes=weights + grad_b + optim_b,
        transient_bytes=act + logits + gather_buf,
        weight_copy_bytes=BF16 * model.n_params * frac / s.tp,
        time_parts=time_parts,
        memory_parts=memory_parts,
        infeasible=_check("train", memory_parts, cluster),
    )


def _inference_cost(
    model: ModelSpec, w: Workload, s: ParallelStrategy, cluster: ClusterSpec, eff: Efficiency
) -> CallCost:
    layers, frac = _stage(model, s)
    h = model.hidden
    seqs_mb = math.ceil(math.ceil(w.n_sequences / s.dp) / s.micro_batches)
    tokens_mb = seqs_mb * w.seq_len
    mm, attn = forward_flops(model, seqs_mb, w.seq_len)
    compute = _compute_time(mm, attn, cluster, eff) * frac / s.tp
    tp_bw, tp_lat = group_bandwidth(cluster, s.tp, eff)
    tp_comm = layers * 2 * allreduce_time(tokens_mb * h * BF16, s.tp, tp_bw, tp_lat)
    pp_bw, pp_lat = group_bandwidth(cluster, s.size, eff)
    p2p = tokens_mb * h * BF16 / pp_bw + pp_lat if s.pp > 1 else 0.0
    stage_mb = compute + tp_comm + p2p + eff.overhead_s
    total = (s.micro_batches + s.pp - 1) * stage_mb
    m = s.micro_batches
    time_parts = (
        ("compute", m * compute),
        ("tp_comm", m * (tp_comm + p2p)),
        ("pp_bubble", (s.pp - 1) * stage_mb),
        ("overhead", m * eff.overhead_s),
    )
    weights = BF16 * model.n_params * frac / s.tp
    in_flight = min(m, s.pp)
    act = in_flight * tokens_mb * ACT_BYTES_PER_TOKEN_LAYER * h / s.tp  # one layer live at a time
    logits = 8.0 * tokens_mb * model.head_out / s.tp  # fp32 logits + log-softmax
    home_parts = (("weights", weights), ("activations", act), ("logits", logits))
    return CallCost(
        time_s=total,
        persistent_bytes=weights,
        transient_bytes=act + logits,
        weight_copy_bytes=weights,
        time_parts=time_parts,
        memory_parts=home_parts,
        infeasible=_check("inference", home_parts, cluster),
    )


def _generate_cost(
    model: ModelSpec, w: Workload, s: ParallelStrategy, cluster: ClusterSpec, eff: Efficiency
) -> CallCost:
    layers, frac = _stage(model, s)
    h, waves = model.hidden, s.micro_batches
    seqs_wave = math.ceil(math.ceil(w.n_sequences / s.dp) / waves)
    # The prompt of a group is prefilled once and its KV blocks are shared (prefix caching).
    prompts_wave = math.ceil(math.ceil(w.batch / s.dp) / waves)
    slots = waves + s.pp - 1  # waves stream through the pipeline stages
    tp_bw, tp_lat = group_bandwidth(cluster, s.tp, eff)
    pp_bw, pp_lat = group_bandwidth(cluster, s.size, eff)

    # Prefill: compute bound.
    p_tokens = prompts_wave * w.prompt_len
    mm, attn = forward_flops(model, prompts_wave, w.prompt_len)
    prefill_stage = (
        _compute_time(mm, attn, cluster, eff) * frac / s.tp
        + layers * 2 * allreduce_time(p_tokens * h * BF16, s.tp, tp_bw, tp_lat)
        + (p_tokens * h * BF16 / pp_bw + pp_lat if s.pp > 1 else 0.0)
        + eff.overhead_s
    )
    prefill = slots * prefill_stage

    # Decode: per step, each stage reads its weight shard once and the KV cache of every sequence
    # (mean context over the generation), and does 2 FLOPs per parameter per sequence.
    context = w.prompt_len + (w.gen_len + 1) / 2
    mm, attn = decode_flops(model, seqs_wave, context)
    flop_t = _compute_time(mm, attn, cluster, eff) * frac / s.tp
    weight_bytes = BF16 * model.matmul_params * frac / s.tp
    kv_read = seqs_wave * context * layers * kv_bytes_per_token_layer(model, s.tp)
    mem_t = (weight_bytes + kv_read) / (cluster.device.hbm_bandwidth * eff.memory)
    # Decode all-reduces are tiny: latency bound.
    tp_comm = layers * 2 * allreduce_time(seqs_wave * h * BF16, s.tp, tp_bw, tp_lat)
    p2p = pp_lat + seqs_wave * h * BF16 / pp_bw if s.pp > 1 else 0.0
    step_stage = max(flop_t, mem_t) + tp_comm + p2p + eff.overhead_s
    decode = w.gen_len * slots * step_stage
    time_parts = (
        ("prefill", prefill),
        ("decode_compute" if flop_t >= mem_t else "decode_memory", w.gen_len * waves * max(flop_t, mem_t)),
        ("tp_comm", w.gen_len * waves * (tp_comm + p2p)),
        ("pp_bubble", w.gen_len * (s.pp - 1) * step_stage),
        ("overhead", w.gen_len * waves * eff.overhead_s),
    )

    weights = BF16 * model.n_params * frac / s.tp
    kv_tokens = prompts_wave * w.prompt_len + seqs_wave * w.gen_len
    kv = min(waves, s.pp) * kv_tokens * layers * kv_bytes_per_token_layer(model, s.tp)
    chunk = min(p_tokens, PREFILL_CHUNK_TOKENS)
    act = chunk * ACT_BYTES_PER_TOKEN_LAYER * h / s.tp + 4.0 * seqs_wave * model.head_out / s.tp
    parts = (("weights", weights), ("kv_cache", kv), ("activations", act))
    return CallCost(
        time_s=prefill + decode,
        persistent_bytes=weights,
        transient_bytes=kv + act,
        weight_copy_bytes=weights,
        time_parts=time_parts,
        memory_parts=parts,
        infeasible=_check("generate", parts, cluster),
    )


# ---------------------------------------------------------------- weight moves


def move_time(
    weight_bytes,
    src_start,
    src_size,
    src_dp,
    src_tp,
    src_pp,
    src_zero,
    dst_start,
    dst_size,
    dst_dp,
    dst_tp,
    dst_pp,
    cluster: ClusterSpec,
    eff: Efficiency,
):
    """Seconds to lay a model's bf16 weights (``weight_bytes`` in all) out for a call, from its
    home layout. Works elementwise on numpy arrays (the search) and on scalars (the report).

    Same mesh and layout: nothing moves, unless the home is ZeRO-3, whose weights are sharded
    over dp and must be all-gathered. Otherwise each destination device receives its whole shard
    over the slowest link between the two meshes (NVLink if both lie in one node); receivers work
    in parallel, so the time is one shard's transfer (ReaLHF's parameter reallocation).
    """
    dpn = cluster.devices_per_node
    same = (
        (src_start == dst_start)
        & (src_size == dst_size)
        & (src_dp == dst_dp)
        & (src_tp == dst_tp)
        & (src_pp == dst_pp)
    )
    shard = weight_bytes / (dst_tp * dst_pp)
    lo = np.minimum(src_start, dst_start)
    hi = np.maximum(src_start + src_size, dst_start + dst_size) - 1
    one_node = (lo // dpn) == (hi // dpn)
    d = cluster.device
    bw = np.where(one_node, d.intra_node_bandwidth, d.inter_node_bandwidth) * eff.comm
    lat = np.where(one_node, d.intra_node_latency, d.inter_node_latency)
    moved = shard / bw + lat
    # ZeRO-3 gather inside the same layout: the dp group spans tp*dp devices.
    dp_span_intra = src_tp * src_dp <= dpn
    dp_bw = np.where(dp_span_intra, d.intra_node_bandwidth, d.inter_node_bandwidth) * eff.comm
    gathered = (src_dp - 1) / src_dp * shard / dp_bw + (src_dp - 1) * lat
    return np.where(same, np.where(src_zero == 3, gathered, 0.0), moved)


def needs_copy(same_layout, src_zero):
    """Whether a call holds its own copy of the weights while it runs (elementwise)."""
    return ~same_layout | (src_zero == 3)
