"""Checks that the trainer computes, for every sample, the function the model computes on that sample
alone, and the function the rollout engine sampled from. Each returns the largest absolute difference,
over sequences longer than the tiny models' sliding window (8). Shared by the CPU matrix
(test_arch_matrix.py) and the GPU one (tests/gpu/test_attention_gpu.py)."""

from __future__ import annotations

import torch

from alignkit.config.sampling import SamplingParams
from alignkit.data.packing import pack
from alignkit.data.samples import TokenizedSample
from alignkit.models.forward import causal_logprobs, gather_logprobs, reward_scores
from alignkit.rollout.hf import HFEngine

WINDOW = 8


def _ids(lengths, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(5, 300, (n,), generator=g).tolist() for n in lengths]


def _sample(ids, n_prompt=0):
    return TokenizedSample(ids, [0] * n_prompt + [1] * (len(ids) - n_prompt), "t")


def plain_batch():
    """Four samples of 17-40 tokens, two or more per row."""
    seqs = _ids((23, 31, 17, 40), seed=0)
    batch = pack([_sample(s) for s in seqs], pad_id=0, capacity=64)
    assert batch.input_ids.shape[0] < len(seqs)
    return seqs, batch


def shared_batch():
    """Two pairs whose prompts (12 and 5 tokens) are shared: continuations whose windows reach back
    into the prompt past the other continuation, and a prompt shorter than the window."""
    seqs, prompts = [], (12, 5)
    for n_prompt, rest in zip(prompts, ((15, 9), (20, 26)), strict=True):
        prompt = _ids((n_prompt,), seed=n_prompt)[0]
        seqs.append([prompt + r for r in _ids(rest, seed=n_prompt + 1)])
    ordered = [pair[0] for pair in seqs] + [pair[1] for pair in seqs]  # chosen 0..n-1, rejected n..2n-1
    n = len(seqs)
    samples = [_sample(s, prompts[i % n]) for i, s in enumerate(ordered)]
    batch = pack(samples, pad_id=0, capacity=128, groups=[[i, n + i] for i in range(n)])
    assert batch.parent is not None
    return ordered, batch


@torch.no_grad()
def logprobs_vs_alone(model, seqs, batch) -> float:
    """Max |packed - alone| token log-prob, over every token but each sample's first."""
    device = next(model.parameters()).device
    batch = batch.to(device)
    lp = causal_logprobs(model, batch)
    worst = 0.0
    for i, s in enumerate(seqs):
        ids = torch.tensor([s], device=device)
        alone = gather_logprobs(model(ids).logits, ids)[0]
        at = (batch.seg_ids == i) & (batch.position_ids > 0)
        worst = max(worst, (lp[at] - alone[batch.position_ids[at]]).abs().max().item())
    return worst


@torch.no_grad()
def rewards_vs_alone(model, seqs, batch) -> float:
    """Max |packed - alone| reward (the score head at each sample's last token)."""
    device = next(model.parameters()).device
    packed = reward_scores(model, batch.to(device))
    alone = torch.stack([model(torch.tensor([s], device=device)).logits[0, 0] for s in seqs])
    return (packed - alone).abs().max().item()


@torch.no_grad()
def engine_vs_trainer(model, tokenizer) -> tuple[float, int]:
    """Max |sampling log-prob - trainer log-prob| of the tokens the HF engine sampled at temperature 1
    (prompts of 3, 11 and 6 tokens: left padding, cache rows dropped as samples end), and the longest
    sample (prompt + response) in tokens."""
    prompts = _ids((3, 11, 6), seed=1)
    gens = HFEngine(model, tokenizer).generate(prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=24,
                                                                       seed=3))
    samples = [_sample(prompts[g.prompt_index] + g.response_ids, len(prompts[g.prompt_index])) for g in gens]
    batch = pack(samples, pad_id=0, capacity=128).to(next(model.parameters()).device)
    lp = causal_logprobs(model, batch)
    worst = max((lp[(batch.seg_ids == i) & (batch.loss_mask > 0)].cpu() - torch.tensor(g.logprobs)).abs().max().item()
                for i, g in enumerate(gens))
    return worst, max(len(s.input_ids) for s in samples)


def main() -> None:
    """Print the matrix of max differences: `python tests/component/arch_fidelity.py [impl ...]`
    (default sdpa eager) with PYTHONPATH pointing at the alignkit sources to measure."""
    import sys
    import tempfile
    import time

    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from alignkit.config.schema import TinyModelConfig
    from alignkit.models.tiny import build_tiny
    from alignkit.models.tiny_archs import ARCHS

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    print(f"{'arch':13s}{'impl':16s}{'packed':>10s}{'shared':>10s}{'reward':>10s}{'engine':>10s}{'longest':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ARCHS:
            path = build_tiny(TinyModelConfig(output=f"{tmp}/{arch}", arch=arch, hidden=64, layers=2, heads=4,
                                              kv_heads=2, window=WINDOW))
            for impl in sys.argv[1:] or ["sdpa", "eager"]:
                start = time.time()
                try:
                    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=impl).eval()
                except ValueError:  # the class has no such path (Gemma 2 and gpt-oss: no sdpa)
                    print(f"{arch:13s}{impl:16s}  not supported")
                    continue
                packed, shared = logprobs_vs_alone(model, *plain_batch()), logprobs_vs_alone(model, *shared_batch())
                engine, longest = engine_vs_trainer(model, AutoTokenizer.from_pretrained(path))
                reward = float("nan")
                if arch != "llama3":  # no pad token: the reward model's pooling needs one
                    rm = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, attn_implementation=impl)
                    reward = rewards_vs_alone(rm.eval(), *shared_batch())
                print(f"{arch:13s}{impl:16s}{packed:10.1e}{shared:10.1e}{reward:10.1e}{engine:10.1e}{longest:8d}"
                      f"  ({time.time() - start:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
