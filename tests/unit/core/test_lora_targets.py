"""LoRA on any architecture (models/lora.py): every linear layer of the decoder blocks whatever it is
called, MoE expert stacks through peft's target_parameters, routers and heads left alone, one log line,
a one-line error for names that match nothing, and merging that gives the adapted model's logits."""

import logging

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from alignkit.config.schema import LoraConfig
from alignkit.errors import ConfigError
from alignkit.models.lora import apply_lora, merged_for_export, resolve_targets
from alignkit.models.tiny_archs import ARCHS, Sizes, SpecialIds

SIZES = Sizes(vocab=512, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=96, max_position=256, window=8)
ATTN = ["self_attn.k_proj", "self_attn.o_proj", "self_attn.q_proj", "self_attn.v_proj"]
MLP = ["mlp.down_proj", "mlp.gate_proj", "mlp.up_proj"]
EXPERTS = ["mlp.experts.down_proj", "mlp.experts.gate_up_proj"]
EXPECTED = {  # arch -> the layers inside a block that get adapters
    **{a: sorted(MLP + ATTN) for a in ("llama", "llama_untied", "llama3", "qwen2", "qwen3", "mistral", "gemma2",
                                       "gemma3", "olmo2")},
    "qwen3_moe": sorted(EXPERTS + ATTN), "mixtral": sorted(EXPERTS + ATTN), "gpt_oss": sorted(EXPERTS + ATTN),
    "phi3": ["mlp.down_proj", "mlp.gate_up_proj", "self_attn.o_proj", "self_attn.qkv_proj"],
    "gpt2": ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"],
    "gpt_neox": ["attention.dense", "attention.query_key_value", "mlp.dense_4h_to_h", "mlp.dense_h_to_4h"],
}


def tiny(arch, cls=AutoModelForCausalLM):
    torch.manual_seed(0)
    config = ARCHS[arch](SIZES, SpecialIds(bos=1, eos=[2, 4], pad=0))
    config._attn_implementation = "eager"
    if cls is AutoModelForSequenceClassification:
        config.num_labels = 1
    return cls.from_config(config).eval()


def test_every_arch_is_covered():
    assert sorted(EXPECTED) == sorted(ARCHS)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_default_targets_and_merged_export(arch, tmp_path):
    model = tiny(arch)
    targets = resolve_targets(model, ["all-linear"])
    assert targets.kinds == EXPECTED[arch]
    assert len(targets.modules) + len(targets.expert_params) == 2 * len(EXPECTED[arch])  # two blocks
    assert targets.conv1d == (arch == "gpt2")
    lora = apply_lora(model, LoraConfig(rank=4), "CAUSAL_LM")
    with torch.no_grad():  # a trained adapter (B = 0 at init would merge to nothing)
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    ids = torch.randint(5, 500, (2, 12))
    with torch.no_grad():
        adapted = lora(input_ids=ids).logits
        with lora.disable_adapter():
            assert (adapted - lora(input_ids=ids).logits).abs().max() > 1e-3  # the adapters do something
    merged = merged_for_export(lora)
    merged.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, adapted, atol=1e-5)
        assert torch.allclose(loaded(input_ids=ids).logits, adapted, atol=1e-5)


def test_log_line_counts_modules_and_parameters(caplog):
    with caplog.at_level(logging.INFO, logger="alignkit"):
        apply_lora(tiny("llama"), LoraConfig(rank=4), "CAUSAL_LM")
    # per block: q, o 64 -> 64: 4 * (64 + 64) each; k, v 64 -> 32: 4 * (64 + 32); gate, up 64 -> 96 and
    # down 96 -> 64: 4 * (64 + 96) each. (2 * 512 + 2 * 384 + 3 * 640) * 2 blocks = 7,424
    assert caplog.messages == [
        "LoRA rank 4 on 14 modules (mlp.down_proj, mlp.gate_proj, mlp.up_proj, self_attn.k_proj, self_attn.o_proj, "
        "self_attn.q_proj, self_attn.v_proj): 7,424 trainable parameters of 101,952 (7.28%)"]


def test_moe_experts_get_one_adapter_per_expert(caplog):
    with caplog.at_level(logging.INFO, logger="alignkit"):
        model = apply_lora(tiny("qwen3_moe"), LoraConfig(rank=4), "CAUSAL_LM")
    assert "on 8 modules and 4 expert weight stacks (mlp.experts.down_proj, mlp.experts.gate_up_proj, " in caplog.text
    # down_proj (4 experts, 64 out, 48 in): A (4 * rank, 48), B (64, 4 * rank); gate_up_proj (4, 2 * 48, 64)
    # likewise, its wrapper nested inside; the router (mlp.gate) has no adapter
    experts = "base_model.model.model.layers.0.mlp.experts"
    assert model.get_parameter(f"{experts}.lora_A.default.weight").shape == (16, 48)
    assert model.get_parameter(f"{experts}.lora_B.default.weight").shape == (64, 16)
    assert model.get_parameter(f"{experts}.base_layer.lora_A.default.weight").shape == (16, 64)
    assert not any("gate.lora" in n for n, _ in model.named_parameters())


def test_named_targets_and_what_matches_nothing():
    assert resolve_targets(tiny("gpt_neox"), ["query_key_value"]).kinds == ["attention.query_key_value"]
    assert resolve_targets(tiny("mixtral"), ["q_proj", "gate_up_proj"]).kinds == [
        "mlp.experts.gate_up_proj", "self_attn.q_proj"]
    assert resolve_targets(tiny("gpt2"), ["all-linear", "lm_head"]).kinds == sorted(EXPECTED["gpt2"] + ["lm_head"])
    with pytest.raises(ConfigError) as e:
        resolve_targets(tiny("phi3"), ["q_proj", "k_proj", "v_proj", "o_proj"])
    assert str(e.value) == (
        "--model.lora.target_modules: q_proj, k_proj, v_proj match no layer of Phi3ForCausalLM; its decoder blocks' "
        "linear layers are mlp.down_proj, mlp.gate_up_proj, self_attn.o_proj, self_attn.qkv_proj (or use all-linear)")


def test_dropout_with_expert_adapters_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^--model.lora.dropout 0.1: peft's adapters on fused MoE expert weights"):
        apply_lora(tiny("gpt_oss"), LoraConfig(rank=4, dropout=0.1), "CAUSAL_LM")


def test_reward_model_head_trains_whole_and_gets_no_adapter():
    model = apply_lora(tiny("gpt2", AutoModelForSequenceClassification), LoraConfig(rank=4), "SEQ_CLS")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "base_model.model.score.modules_to_save.default.weight" in trainable
    assert not any("score" in n and "lora" in n for n in trainable)
