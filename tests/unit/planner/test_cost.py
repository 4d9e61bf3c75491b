"""Cost formulas against numbers computed by hand."""

from __future__ import annotations

import pytest

from alignkit.planner.cost import (
    allgather_time,
    allreduce_time,
    attention_flops,
    call_cost,
    decode_flops,
    forward_flops,
    kv_bytes_per_token_layer,
    move_time,
)
from alignkit.planner.efficiency import Efficiency
from alignkit.planner.graph import Workload
from alignkit.planner.hardware import ClusterSpec, get_device
from alignkit.planner.models import NAMED_MODELS
from alignkit.planner.strategy import ParallelStrategy

L7B = NAMED_MODELS["7b"]
H100x8 = ClusterSpec(1, 8, get_device("h100"))


def test_7b_parameter_count_matches_llama2():
    # per layer: q,o 2*4096*4096 = 33,554,432; k,v (no GQA) 33,554,432; SwiGLU 3*4096*11008 =
    # 135,266,304; two norms 8,192  -> 202,383,360
    assert L7B.layer_params == 202_383_360
    # 32 layers 6,476,267,520 + embedding 131,072,000 + lm head 131,072,000 + final norm 4,096
    assert L7B.n_params == 6_738_415_616  # the released Llama-2-7b count
    # matmul params skip the embedding lookup: 6,476,267,520 + 131,072,000
    assert L7B.matmul_params == 6_607_339_520


def test_7b_forward_flops_of_one_1024_token_sequence():
    n = 1024
    # 2 FLOPs per matmul parameter per token: 2 * 6,607,339,520 * 1024
    matmul = 13_531_831_336_960
    # causal attention: 4*hidden per (query, key) pair per layer, n(n+1)/2 pairs:
    # 2 * 32 layers * 4096 * 1024 * 1025
    attention = 275_146_342_400
    mm, attn = forward_flops(L7B, 1, n)
    assert mm == matmul
    assert attn == attention
    assert mm + attn == 13_806_977_679_360
    # Batches scale linearly.
    assert forward_flops(L7B, 4, n)[0] == 4 * matmul
    assert attention_flops(L7B, 4, n) == 4 * attention


def test_decode_flops_and_kv_bytes():
    mm, attn = decode_flops(L7B, 2, 100)
    assert mm == 2 * 6_607_339_520 * 2
    assert attn == 4 * 32 * 4096 * 100 * 2
    assert kv_bytes_per_token_layer(L7B, 1) == 2 * 4096 * 2  # K and V, bf16
    # 70B has 8 KV heads of 128: with tp=8 each device keeps one head; with tp=16 it is replicated
    l70 = NAMED_MODELS["70b"]
    assert kv_bytes_per_token_layer(l70, 8) == 2 * 128 * 2
    assert kv_bytes_per_token_layer(l70, 1) == 2 * 1024 * 2


def test_collective_formulas():
    assert allreduce_time(1e9, 1, 1e11, 1e-5) == 0.0
    assert allreduce_time(1e9, 8, 1e11, 0.0) == pytest.approx(2 * 7 / 8 * 1e9 / 1e11)
    assert allgather_time(1e9, 4, 1e11, 0.0) == pytest.approx(3 / 4 * 1e9 / 1e11)
    assert allreduce_time(0, 4, 1e11, 1e-5) == pytest.approx(6e-5)  # latency only


WL = Workload(batch=64, prompt_len=512, gen_len=512, minibatches=1)


def test_7b_zero3_adam_memory_over_8_devices():
    s = ParallelStrategy(dp=8, tp=1, pp=1, zero=3, micro_batches=8, recompute=True)
    cost = call_cost("train", L7B, WL, s, H100x8, Efficiency())
    # bf16 weights 2 + bf16 grads 2 + fp32 master, m, v 12 = 16 bytes/param, all sharded 8 ways:
    # 16 * 6,738,415,616 / 8 = 16 * 842,301,952
    assert cost.persistent_bytes == pytest.approx(13_476_831_232)
    parts = dict(cost.memory_parts)
    assert parts["weights"] == pytest.approx(2 * 842_301_952)
    assert parts["optimizer"] == pytest.approx(12 * 842_301_952)


def test_zero_stages_shard_progressively():
    eff = Efficiency()
    mem = [
        call_cost("train", L7B, WL, ParallelStrategy(8, 1, 1, z, 8, True), H100x8, eff).memory_parts
        for z in range(4)
    ]
    d = [dict(m) for m in mem]
    p = L7B.n_params
    assert d[0]["optimizer"] == pytest.approx(12 * p) and d[1]["optimizer"] == pytest.approx(12 * p / 8)
    assert d[1]["grads"] == pytest.approx(2 * p) and d[2]["grads"] == pytest.approx(2 * p / 8)
    assert d[2]["weights"] == pytest.approx(2 * p) and d[3]["weights"] == pytest.approx(2 * p / 8)


def test_infeasible_strategy_is_rejected_with_the_reason():
    # Plain data parallelism keeps all 16 bytes/param on every device: 100 GiB for 7B.
    cost = call_cost("train", L7B, WL, ParallelStrategy(8, 1, 1, 0, 8, True), H100x8, Efficiency())
    assert not cost.feasible
    assert "train needs" in cost.infeasible
    assert "optimizer 75.3" in cost.infeasible  # 12 * 6.74e9 bytes = 75.3 GiB
    assert "usable on h100" in cost.infeasible


def test_decode_is_memory_bound_and_training_compute_bound():
    eff = Efficiency()
    gen = call_cost("generate", L7B, WL, ParallelStrategy(8, 1, 1, 0, 1), H100x8, eff)
    assert "decode_memory" in dict(gen.time_parts)
    train = call_cost("train", L7B, WL, ParallelStrategy(1, 8, 1, 0, 8, False), H100x8, eff)
    parts = dict(train.time_parts)
    assert parts["compute"] == max(parts.values())
    # Training FLOPs: 3x forward over all 64 * 1024 tokens, split 8 ways at 50% of peak.
    mm, attn = forward_flops(L7B, 64, 1024)
    peak = 989e12
    expected = 3 * (mm / (peak * 0.5) + attn / (peak * 0.4)) / 8
    assert parts["compute"] == pytest.approx(expected, rel=1e-9)


def test_tensor_parallel_speeds_up_decode_of_one_sequence():
    wl = Workload(batch=1, prompt_len=128, gen_len=128)
    t = [
        call_cost("generate", L7B, wl, ParallelStrategy(1, tp, 1, 0, 1), H100x8, Efficiency()).time_s
        for tp in (1, 4)
    ]
    assert t[1] < t[0]


def test_weight_move_is_free_in_the_same_layout_and_costs_a_shard_otherwise():
    eff = Efficiency(comm=1.0)
    w = 2 * L7B.n_params
    same = move_time(w, 0, 8, 8, 1, 1, 2, 0, 8, 8, 1, 1, H100x8, eff)
    assert float(same) == 0.0
    # ZeRO-3 home: the same layout still all-gathers over dp=8 on NVLink
    z3 = move_time(w, 0, 8, 8, 1, 1, 3, 0, 8, 8, 1, 1, H100x8, eff)
    assert float(z3) == pytest.approx(7 / 8 * w / 450e9 + 7 * 8e-6)
    # Another layout inside the node: each device receives its tp=2 shard over NVLink
    other = move_time(w, 0, 8, 8, 1, 1, 0, 0, 8, 4, 2, 1, H100x8, eff)
    assert float(other) == pytest.approx(w / 2 / 450e9 + 8e-6)
