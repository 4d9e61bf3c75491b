"""The chunked LM head (models/chunked_head.py, models/lm_head.py) against the full-logits path: the same
token log-probs, entropies and gradients (1e-5, fp32) on tiny random models built offline, and no
`(tokens, vocab)` tensor on the way."""

import logging

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForCausalLM, CohereConfig, Gemma2Config, LlamaConfig

from alignkit.config.schema import LoraConfig, ModelConfig
from alignkit.data.packing import pack
from alignkit.data.samples import TokenizedSample
from alignkit.models.chunked_head import HeadFn, chunked_token_stats
from alignkit.models.forward import causal_forward
from alignkit.models.lm_head import chunked_head, enable_chunked_logprobs
from alignkit.models.load import apply_lora, load_causal_lm
from alignkit.models.tiny_archs import ARCHS

VOCAB = 300
CHUNK = 5  # divides none of the batches' token counts: the last chunk is short
TOL = {"rtol": 1e-5, "atol": 1e-5}
SIZES = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
         "num_key_value_heads": 1, "vocab_size": VOCAB}


def tiny(kind: str = "llama", **extra):
    torch.manual_seed(0)
    if kind == "gemma2":  # soft-capped logits, large enough here that the cap bends them
        cfg = Gemma2Config(**SIZES, head_dim=16, final_logit_softcapping=2.0, query_pre_attn_scalar=16,
                           attn_implementation="eager", **extra)
    elif kind == "cohere":  # logits scaled by logit_scale
        cfg = CohereConfig(**SIZES, logit_scale=0.5, **extra)
    else:
        cfg = LlamaConfig(**SIZES, **extra)
    model = AutoModelForCausalLM.from_config(cfg)
    if kind == "gemma2":
        with torch.no_grad():
            model.lm_head.weight.mul_(40.0)
    return model


def sample(ids, mask=None):
    return TokenizedSample(ids, mask or [1] * len(ids), "t")


def packed_batch():
    torch.manual_seed(1)
    seqs = [torch.randint(5, VOCAB, (n,)).tolist() for n in (7, 3, 11, 5)]
    return pack([sample(s) for s in seqs], pad_id=0, capacity=16)


def shared_prompt_batch():
    torch.manual_seed(2)
    samples, groups = [], []
    for i, (p, c, r) in enumerate(((5, 3, 4), (4, 2, 6))):
        prompt = torch.randint(5, VOCAB, (p,)).tolist()
        samples += [sample(prompt + torch.randint(5, VOCAB, (n,)).tolist(), [0] * p + [1] * n) for n in (c, r)]
        groups.append([2 * i, 2 * i + 1])
    batch = pack(samples, pad_id=0, capacity=24, groups=groups)
    assert batch.parent is not None
    return batch


def run(model, batch, chunk: int, temperature: float = 1.0, entropy_grad: bool = True):
    """Token log-probs and entropies `(rows, seq)` and every parameter's gradient of a loss that weighs each
    token's log-prob and entropy differently."""
    enable_chunked_logprobs(model.get_base_model() if hasattr(model, "get_base_model") else model, chunk)
    model.zero_grad()
    lp, ent = causal_forward(model, batch, temperature, with_entropy=True, entropy_grad=entropy_grad)
    weights = torch.linspace(-1.0, 2.0, lp.numel()).view_as(lp)
    loss = (lp * weights * batch.loss_mask).sum() + (0.3 * ent * weights.flip(-1) if entropy_grad else 0 * ent).sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return lp.detach(), ent.detach(), grads


def assert_same(model, batch, **kw):
    full, chunked = run(model, batch, 0, **kw), run(model, batch, CHUNK, **kw)
    torch.testing.assert_close(chunked[0], full[0], **TOL)
    torch.testing.assert_close(chunked[1], full[1], **TOL)
    assert chunked[2].keys() == full[2].keys() and full[2]
    for name, grad in full[2].items():
        torch.testing.assert_close(chunked[2][name], grad, **TOL, msg=lambda m, n=name: f"{n}: {m}")
    return full


@pytest.mark.parametrize(("kind", "extra"), [("llama", {"tie_word_embeddings": False}),
                                             ("llama", {"tie_word_embeddings": True}),
                                             ("gemma2", {}), ("cohere", {})],
                         ids=["untied", "tied", "gemma2-softcap", "cohere-logit-scale"])
def test_chunked_equals_full_logits(kind, extra):
    model = tiny(kind, **extra)
    enable_chunked_logprobs(model, CHUNK)
    assert chunked_head(model) is not None  # the probe accepted this model's logit function
    full = assert_same(model, packed_batch(), temperature=0.7)
    assert "lm_head.weight" in full[2] or "model.embed_tokens.weight" in full[2]


def test_softcap_bends_the_probe_logits():
    # Otherwise the Gemma 2 case would pass with the cap left out.
    model = tiny("gemma2")
    ids = torch.arange(16)[None] * 7
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert float(logits.abs().max()) > 1.0  # tanh(x / 2) * 2 is far from x there


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_architecture_of_the_matrix_chunks_exactly(arch, arch_dir):
    # Tied and untied heads, GPT-NeoX's `embed_out`, Gemma 2's soft-capping, MoE and fused-projection bodies.
    model = load_causal_lm(ModelConfig(path=str(arch_dir(arch)), attn_implementation="eager",
                                       logprob_chunk_tokens=CHUNK), torch.device("cpu"))
    assert chunked_head(model) is not None
    assert_same(model, packed_batch(), temperature=0.9)


def test_shared_prompt_packing_and_logged_entropy():
    model = tiny()
    assert_same(model, shared_prompt_batch(), temperature=1.3)
    assert_same(model, shared_prompt_batch(), entropy_grad=False)


def test_gradient_checkpointing():
    model = tiny()
    model.gradient_checkpointing_enable()
    model.train()
    assert_same(model, packed_batch())


def test_lora_adapters_get_the_same_gradients():
    model = apply_lora(tiny(), LoraConfig(rank=4, target_modules=["q_proj", "v_proj"]), "CAUSAL_LM")
    with torch.no_grad():  # B starts at zero; give the adapters an effect
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    full = assert_same(model, packed_batch())
    assert any("lora_A" in n for n in full[2]) and "base_model.model.lm_head.weight" not in full[2]


def test_lora_on_the_output_layer_keeps_full_logits():
    model = tiny()
    enable_chunked_logprobs(model, CHUNK)
    wrapped = apply_lora(model, LoraConfig(rank=4, target_modules=["lm_head"]), "CAUSAL_LM")
    assert chunked_head(wrapped.get_base_model()) is None  # the adapter is not in lm_head.weight


def test_a_logit_function_the_probe_cannot_reproduce_keeps_full_logits(caplog):
    model = tiny()
    model.config.logit_scale = 0.5  # read as Cohere's, but Llama's forward ignores it
    with caplog.at_level(logging.INFO, logger="alignkit"):
        enable_chunked_logprobs(model, CHUNK)
    assert chunked_head(model) is None
    assert caplog.messages == ["log-probs from full logits (--model.logprob_chunk_tokens ignored): its logits are "
                               "not HeadFn(scale=0.5, softcap=None) of its output layer"]


def test_load_causal_lm_chunks_by_default_and_0_turns_it_off(tiny_dir):
    assert chunked_head(load_causal_lm(ModelConfig(path=str(tiny_dir)), torch.device("cpu"))).chunk_tokens == 256
    assert chunked_head(load_causal_lm(ModelConfig(path=str(tiny_dir), logprob_chunk_tokens=0),
                                       torch.device("cpu"))) is None


def reference_stats(hidden, weight, bias, targets, head: HeadFn, temperature):
    """The full-logits computation, differentiable by autograd, in the inputs' dtype (float64 here)."""
    logits = head.scale * torch.nn.functional.linear(hidden, weight, bias)
    logits = torch.tanh(logits / head.softcap) * head.softcap / temperature
    lp = logits.log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
    p = logits.softmax(-1)
    return lp, -(p * logits.log_softmax(-1)).sum(-1)


@pytest.mark.parametrize("terms", ["logprob", "entropy", "both"])
def test_function_gradients_with_bias_scale_and_softcap(terms):
    torch.manual_seed(3)
    n, h, v = 13, 8, 50
    head, temperature = HeadFn(scale=1.7, softcap=3.0), 0.8
    hidden, weight, bias = (torch.randn(*s, dtype=torch.float64).requires_grad_() for s in ((n, h), (v, h), (v,)))
    hidden32, weight32, bias32 = (t.detach().float().requires_grad_() for t in (hidden, weight, bias))
    targets = torch.randint(0, v, (n,))
    g_lp, g_ent = torch.randn(n), torch.randn(n)

    def loss(lp, ent):
        return (lp * g_lp.to(lp.dtype)).sum() * (terms != "entropy") + (ent * g_ent.to(ent.dtype)).sum() * (terms != "logprob")

    want = reference_stats(hidden, weight, bias, targets, head, temperature)
    loss(*want).backward()
    got = chunked_token_stats(hidden32, weight32, bias32, targets, head, temperature, chunk=4, with_entropy=True)
    loss(*got).backward()
    for g, w in zip((*got, hidden32.grad, weight32.grad, bias32.grad),
                    (*want, hidden.grad, weight.grad, bias.grad), strict=True):
        torch.testing.assert_close(g.detach().double(), w.detach(), **TOL)


class LargestTensor(TorchDispatchMode):
    """The most elements any operation's output had."""

    def __init__(self):
        super().__init__()
        self.most = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.most = max(self.most, t.numel())
        return out


def test_no_tokens_by_vocab_tensor_forward_or_backward():
    model = tiny()
    batch = pack([sample(list(range(5, 69)))], pad_id=0)  # 64 tokens
    largest = {}
    for chunk in (0, 8):
        enable_chunked_logprobs(model, chunk)
        with LargestTensor() as meter:
            lp, ent = causal_forward(model, batch, with_entropy=True, entropy_grad=True)
            (lp.sum() + ent.sum()).backward()
        largest[chunk] = meter.most
    # The full path makes the (64, 300) logits; the chunked one nothing larger than the weight (300 x 32)
    # or its gradient, while a chunk's logits are (8, 300).
    assert largest == {0: 64 * VOCAB, 8: VOCAB * 32}
