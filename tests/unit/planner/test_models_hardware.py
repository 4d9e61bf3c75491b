"""Model shapes, device tables, cluster parsing, meshes and strategies."""

from __future__ import annotations

import pytest

from alignkit.errors import ConfigError
from alignkit.planner.graph import Workload, build_graph
from alignkit.planner.hardware import (
    GIB,
    ClusterSpec,
    get_device,
    load_device_table,
    make_cluster,
    parse_devices,
)
from alignkit.planner.models import NAMED_MODELS, resolve_model
from alignkit.planner.strategy import (
    DeviceMesh,
    enumerate_layouts,
    enumerate_meshes,
    enumerate_strategies,
    is_valid_mesh,
)


def test_named_sizes_and_aliases():
    assert resolve_model("7b") is NAMED_MODELS["7b"]
    assert resolve_model("llama-2-70B") is NAMED_MODELS["70b"]
    assert 68.9e9 < NAMED_MODELS["70b"].n_params < 69.0e9  # Llama-2-70b: 68,976,648,192
    assert NAMED_MODELS["70b"].n_params == 68_976_648_192
    assert 13.0e9 < NAMED_MODELS["13b"].n_params < 13.1e9
    for small in ("125m", "350m", "1b"):
        assert small in NAMED_MODELS


def test_value_head_drops_the_vocabulary_head():
    m = NAMED_MODELS["7b"]
    v = m.with_value_head()
    assert m.n_params - v.n_params == 32000 * 4096 - 4096


def test_unknown_model_names_the_choices():
    with pytest.raises(ConfigError, match=r"unknown model '9b'.*7b.*70b"):
        resolve_model("9b")


def test_model_from_a_hugging_face_config_folder(tmp_path):
    from transformers import LlamaConfig

    cfg = LlamaConfig(hidden_size=256, intermediate_size=688, num_hidden_layers=3, num_attention_heads=8,
                      num_key_value_heads=2, vocab_size=1000)  # fmt: skip
    cfg.save_pretrained(tmp_path)
    spec = resolve_model(str(tmp_path))
    assert (spec.n_layers, spec.hidden, spec.n_heads, spec.n_kv_heads, spec.intermediate, spec.vocab) == (
        3, 256, 8, 2, 688, 1000
    )  # fmt: skip
    assert spec.kv_dim == 64


def test_folder_without_config(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_model(str(tmp_path))


@pytest.mark.parametrize(
    "text,expected", [("8x8", (8, 8)), ("2X4", (2, 4)), ("4", (1, 4)), ("16x8", (16, 8))]
)
def test_parse_devices(text, expected):
    assert parse_devices(text) == expected


@pytest.mark.parametrize("text", ["8y8", "x8", "8x", "0x8", "2x6"])
def test_bad_devices_are_config_errors(text):
    with pytest.raises(ConfigError, match="bad --devices"):
        parse_devices(text)


def test_unknown_device_names_the_choices():
    with pytest.raises(ConfigError, match=r"unknown device kind 'b200'.*a100-40g.*h100"):
        get_device("b200")


def test_builtin_device_table():
    h100 = get_device("H100")
    assert h100.peak_flops == 989e12 and h100.memory_bytes == 80 * GIB
    for name in ("h100", "a100-80g", "a100-40g", "h200", "cpu"):
        get_device(name)


def test_yaml_device_table_extends_and_overrides(tmp_path):
    f = tmp_path / "devices.yaml"
    f.write_text(
        "my-gpu:\n  peak_tflops: 500\n  memory_gib: 96\n  hbm_gb_s: 4000\n  intra_node_gb_s: 400\n"
        "  inter_node_gb_s: 50\n  inter_node_latency_us: 10\n"
        "h100:\n  peak_tflops: 900\n  memory_gib: 80\n  hbm_gb_s: 3350\n  intra_node_gb_s: 450\n  inter_node_gb_s: 50\n"
    )
    table = load_device_table(f)
    mine = table["my-gpu"]
    assert (
        mine.peak_flops == 500e12
        and mine.memory_bytes == 96 * GIB
        and mine.inter_node_latency == pytest.approx(10e-6)
    )
    assert table["h100"].peak_flops == 900e12
    assert "a100-80g" in table
    cluster = make_cluster("2x4", "my-gpu", table)
    assert cluster.n_devices == 8


def test_yaml_device_table_missing_field(tmp_path):
    f = tmp_path / "devices.yaml"
    f.write_text("my-gpu:\n  peak_tflops: 500\n  memory_gib: 96\n")
    with pytest.raises(ConfigError, match=r"'my-gpu' is missing field\(s\) \['hbm_gb_s'"):
        load_device_table(f)


def test_yaml_device_table_bad_value(tmp_path):
    f = tmp_path / "devices.yaml"
    f.write_text(
        "g:\n  peak_tflops: fast\n  memory_gib: 1\n  hbm_gb_s: 1\n  intra_node_gb_s: 1\n  inter_node_gb_s: 1\n"
    )
    with pytest.raises(ConfigError, match="g.peak_tflops must be a number"):
        load_device_table(f)


def test_meshes_are_aligned_node_blocks_or_whole_nodes():
    cluster = ClusterSpec(2, 8, get_device("h100"))
    meshes = enumerate_meshes(cluster)
    # per node 8 + 4 + 2 + 1 = 15 sub-node meshes, twice; plus the 16-device mesh
    assert len(meshes) == 31
    assert DeviceMesh(4, 4) in meshes and DeviceMesh(2, 4) not in meshes
    assert DeviceMesh(0, 16) in meshes and DeviceMesh(4, 8) not in meshes
    assert all(is_valid_mesh(m, cluster) for m in meshes)
    assert not is_valid_mesh(DeviceMesh(8, 16), cluster)


def test_layouts_keep_tensor_parallel_inside_a_node_and_divide_heads():
    cluster = ClusterSpec(4, 8, get_device("h100"))
    layouts = enumerate_layouts(32, NAMED_MODELS["7b"], cluster)
    assert all(dp * tp * pp == 32 for dp, tp, pp in layouts)
    assert max(tp for _, tp, _ in layouts) == 8
    assert (32, 1, 1) in layouts and (1, 8, 4) in layouts
    # 13b has 40 heads: tp=8 divides, tp=16 would not (and leaves the node anyway)
    assert all(
        40 % tp == 0
        for _, tp, _ in enumerate_layouts(16, NAMED_MODELS["13b"], ClusterSpec(1, 16, get_device("h100")))
    )


def test_strategies_give_every_rank_a_sequence():
    cluster = ClusterSpec(1, 8, get_device("h100"))
    wl = Workload(batch=4, prompt_len=16, gen_len=16, minibatches=2)
    strategies = enumerate_strategies("train", 8, NAMED_MODELS["125m"], wl, cluster)
    # 2 sequences per optimizer step: at most dp=2
    assert strategies and max(s.dp for s in strategies) == 2
    assert all(s.zero <= 1 for s in strategies if s.pp > 1)


def test_graphs():
    m = NAMED_MODELS["125m"]
    wl = Workload(8, 16, 16)
    ppo = build_graph("ppo", m, wl, critic=m, reference=m, reward=m)
    assert [c.name for c in ppo.calls] == [
        "rollout.generate", "reward.score", "reference.logprobs", "policy.logprobs", "critic.values",
        "policy.train", "critic.train",
    ]  # fmt: skip
    assert ppo.home_call("policy") == ppo.index("policy.train")
    grpo = build_graph("grpo", m, wl, reference=m)
    assert [c.name for c in grpo.calls] == [
        "rollout.generate",
        "reference.logprobs",
        "policy.logprobs",
        "policy.train",
    ]
    with pytest.raises(ConfigError, match="unknown --algo 'dpo'"):
        build_graph("dpo", m, wl)
    with pytest.raises(ConfigError, match="needs a critic"):
        build_graph("ppo", m, wl)
