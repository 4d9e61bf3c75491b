"""The architecture matrix: for every tiny architecture (models/tiny_archs.py) and every attention
implementation it supports, packed rows (several samples per row, and pairs sharing their prompt) give
the per-token log-probs and rewards of each sample alone, and the HF rollout engine's sampling log-probs
are the trainer's, within 1e-5, on sequences longer than the sliding window (8).

A default subset runs in every run: sliding window (mistral), per-layer types (gemma3), eager-only with
soft-capping (gemma2), eager-only MoE with attention sinks and per-layer types (gpt_oss), absolute
positions (gpt2), the Llama-3 token layout (llama3). ALIGNKIT_SLOW=1 runs all of it, flex_attention
included (forward only: on a CPU it compiles for tens of seconds and has no backward)."""

import pytest
import torch
from arch_fidelity import (
    WINDOW,
    engine_vs_trainer,
    logprobs_vs_alone,
    plain_batch,
    rewards_vs_alone,
    shared_batch,
)
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignkit.config.schema import ModelConfig
from alignkit.models.attention_impl import supports
from alignkit.models.load import load_reward_model
from alignkit.models.tiny_archs import ARCHS, Sizes, SpecialIds

DEFAULT = {"mistral", "gemma3", "gemma2", "gpt_oss", "gpt2", "llama3"}
TOL = 1e-5


def model_class(arch):
    sizes = Sizes(vocab=512, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, max_position=128,
                  window=WINDOW)
    return AutoModelForCausalLM._model_mapping[type(ARCHS[arch](sizes, SpecialIds(bos=1, eos=[2], pad=0)))]


def cases(*impls):
    """(arch, impl) for each implementation the architecture's class supports; outside DEFAULT, slow."""
    return [
        pytest.param(arch, impl, id=f"{arch}-{impl}", marks=() if arch in DEFAULT else (pytest.mark.slow,))
        for arch in sorted(ARCHS) for impl in impls if supports(model_class(arch), impl)
    ]


@pytest.fixture(scope="module")
def causal_lm(arch_dir):
    loaded = {}

    def load(arch, impl):
        if (arch, impl) not in loaded:
            loaded[arch, impl] = AutoModelForCausalLM.from_pretrained(arch_dir(arch), attn_implementation=impl).eval()
        return loaded[arch, impl]

    return load


def test_every_architecture_is_in_the_matrix():
    assert {p.values[0] for p in cases("sdpa", "eager")} == set(ARCHS)
    assert {p.values[1] for p in cases("sdpa", "eager") if p.values[0] in ("gemma2", "gpt_oss")} == {"eager"}


@pytest.mark.parametrize("arch,impl", cases("sdpa", "eager"))
def test_packed_logprobs_equal_each_sample_alone(arch, impl, causal_lm):
    model = causal_lm(arch, impl)
    assert logprobs_vs_alone(model, *plain_batch()) < TOL
    assert logprobs_vs_alone(model, *shared_batch()) < TOL


@pytest.mark.parametrize("arch,impl", cases("sdpa", "eager"))
def test_engine_samples_from_the_trainers_function(arch, impl, causal_lm, arch_dir):
    worst, longest = engine_vs_trainer(causal_lm(arch, impl), AutoTokenizer.from_pretrained(arch_dir(arch)))
    assert longest > 2 * WINDOW  # generation ran well past the window
    assert worst < TOL


@pytest.mark.parametrize("arch,impl", [c for c in cases("sdpa", "eager") if c.values[0] != "llama3"])
def test_packed_rewards_equal_each_sample_alone(arch, impl, arch_dir):
    # the score head of reward models and critics reads the same packed masks (models/forward.py head_scores)
    model = load_reward_model(ModelConfig(path=str(arch_dir(arch)), attn_implementation=impl), torch.device("cpu"))
    model.eval()
    assert rewards_vs_alone(model, *plain_batch()) < TOL
    assert rewards_vs_alone(model, *shared_batch()) < TOL


@pytest.mark.slow
@pytest.mark.parametrize("arch", [c.values[0] for c in cases("flex_attention") if c.values[0] != "gpt_oss"])
def test_flex_attention_packed_logprobs_equal_each_sample_alone(arch, arch_dir):
    # gpt-oss's attention sinks need flex attention's log-sum-exp, which a CPU does not return
    torch._dynamo.reset()  # a compiled flex kernel of another model's masks makes inductor's CPU codegen fail
    model = AutoModelForCausalLM.from_pretrained(arch_dir(arch), attn_implementation="flex_attention").eval()
    assert logprobs_vs_alone(model, *plain_batch()) < TOL
    assert logprobs_vs_alone(model, *shared_batch()) < TOL
