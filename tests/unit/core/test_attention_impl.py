"""A model that cannot run the configured attention implementation falls back to one it can, in one
log line, wherever alignkit loads models (models/load.py `_load`: policy, reference, reward, critic,
rollout)."""

import logging

import pytest
import torch

from alignkit.config.schema import ModelConfig
from alignkit.models.load import load_causal_lm, load_reward_model

CPU = torch.device("cpu")


def load(loader, path, impl, caplog):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        model = loader(ModelConfig(path=str(path), attn_implementation=impl), CPU)
    return model.config._attn_implementation, [r.getMessage() for r in caplog.records if r.name == "alignkit"]


@pytest.mark.parametrize("arch,model_cls", [("gemma2", "Gemma2ForCausalLM"), ("gpt_oss", "GptOssForCausalLM")])
def test_eager_only_models_load_with_eager(arch, model_cls, arch_dir, caplog):
    assert load(load_causal_lm, arch_dir(arch), "sdpa", caplog) == (
        "eager", [f"{model_cls} does not support attn_implementation=sdpa; using eager"])


def test_reward_models_fall_back_too(arch_dir, caplog):
    assert load(load_reward_model, arch_dir("gemma2"), "sdpa", caplog) == (
        "eager", ["Gemma2ForSequenceClassification does not support attn_implementation=sdpa; using eager"])


def test_supported_implementations_are_kept_silently(arch_dir, caplog):
    assert load(load_causal_lm, arch_dir("mistral"), "sdpa", caplog) == ("sdpa", [])
    assert load(load_causal_lm, arch_dir("gemma2"), "eager", caplog) == ("eager", [])


def test_flex_falls_back_where_it_cannot_run(arch_dir, caplog):
    assert load(load_causal_lm, arch_dir("gpt2"), "flex_attention", caplog) == (
        "sdpa", ["GPT2LMHeadModel does not support attn_implementation=flex_attention; using sdpa"])
    # on a CPU flex attention has no backward (and gpt-oss's attention sinks need what it cannot return)
    assert load(load_causal_lm, arch_dir("mistral"), "flex_attention", caplog) == (
        "sdpa", ["MistralForCausalLM: flex_attention has no backward on a CPU; using sdpa"])
    assert load(load_causal_lm, arch_dir("gpt_oss"), "flex_attention", caplog) == (
        "eager", ["GptOssForCausalLM: flex_attention has no backward on a CPU; using eager"])
