"""flex_attention, which alignkit runs on GPUs only, on packed rows: each sample's log-probs alone and
the gradient of the reference kernel (sdpa, or eager for gpt-oss), for a sliding-window model, a
per-layer-type model and gpt-oss (attention sinks, applied from flex attention's log-sum-exp on a GPU).
Skipped without a CUDA device."""

import sys
from pathlib import Path

import pytest
import torch

from alignkit.config.schema import ModelConfig
from alignkit.models.forward import causal_logprobs
from alignkit.models.load import load_causal_lm

pytestmark = pytest.mark.gpu

sys.path.insert(0, str(Path(__file__).parents[1] / "component"))  # the CPU matrix's checks
from arch_fidelity import logprobs_vs_alone, plain_batch, shared_batch  # noqa: E402

CUDA = torch.device("cuda")
TOL = 1e-4  # fp32 on a GPU: the flex kernel sums in another order than sdpa's


@pytest.mark.parametrize("arch,reference", [("mistral", "sdpa"), ("gemma3", "sdpa"), ("gpt_oss", "eager")])
def test_flex_attention_packed_rows(arch, reference, arch_dir):
    def load(impl):
        return load_causal_lm(ModelConfig(path=str(arch_dir(arch)), attn_implementation=impl), CUDA)

    flex = load("flex_attention").eval()
    assert flex.config._attn_implementation == "flex_attention"
    assert logprobs_vs_alone(flex, *plain_batch()) < TOL
    assert logprobs_vs_alone(flex, *shared_batch()) < TOL

    other = load(reference).eval()
    _, batch = shared_batch()
    batch = batch.to(CUDA)
    grads = []
    for model in (flex, other):
        (causal_logprobs(model, batch) * batch.loss_mask).sum().backward()
        grads.append(model.get_input_embeddings().weight.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=TOL, atol=TOL)
