"""Sampling math (alignkit.rollout.sampling) against hand-computed distributions."""

import math

import pytest
import torch

from alignkit.rollout.sampling import inverse_cdf, sample, truncate


def kept(probs, **kw) -> set[int]:
    """Vocabulary ids with nonzero weight after truncation, for a single row."""
    weights, order = truncate(torch.tensor([probs]), **kw)
    ids = order[0] if order is not None else torch.arange(len(probs))
    return {int(i) for i, w in zip(ids, weights[0], strict=True) if w > 0}


def grid(rows: int) -> torch.Tensor:
    """Evenly spaced uniforms (i + 0.5) / rows: inverse-CDF sampling with these hits each token in
    proportion to its probability, up to one row."""
    return (torch.arange(rows) + 0.5) / rows


def test_top_k_keeps_exactly_k_even_with_ties():
    assert kept([0.1, 0.4, 0.2, 0.3], top_k=2) == {1, 3}
    weights, _ = truncate(torch.full((3, 10), 0.1), top_k=4)  # all tied
    assert (weights > 0).sum(-1).tolist() == [4, 4, 4]
    assert kept([0.1, 0.4, 0.2, 0.3], top_k=4) == {0, 1, 2, 3}  # k >= vocab keeps all


def test_top_p_keeps_smallest_set_reaching_p():
    # sorted: 0.5 (id 1), 0.25 (id 3), 0.125, 0.125 -> cumulative 0.5, 0.75, 0.875, 1
    probs = [0.125, 0.5, 0.125, 0.25]
    assert kept(probs, top_p=0.3) == {1}
    assert kept(probs, top_p=0.5) == {1}  # 0.5 alone already reaches p
    assert kept(probs, top_p=0.6) == {1, 3}
    assert kept(probs, top_p=0.75) == {1, 3}
    assert len(kept(probs, top_p=0.8)) == 3
    assert kept(probs, top_p=1.0) == {0, 1, 2, 3}


def test_top_p_applies_to_the_renormalised_top_k_set():
    # top-2 of [0.4, 0.3, 0.2, 0.1] renormalises to 4/7, 3/7; 4/7 >= 0.5 so one token is enough
    assert kept([0.4, 0.3, 0.2, 0.1], top_k=2, top_p=0.5) == {0}
    assert kept([0.4, 0.3, 0.2, 0.1], top_p=0.5) == {0, 1}  # without top-k, 0.4 < 0.5


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_sets_the_sampled_distribution(temperature):
    logits = torch.tensor([1.0, 2.0, 0.0, -1.0])
    rows = 10_000
    tokens, logprobs = sample(logits.expand(rows, -1), grid(rows), temperature)
    expected = torch.softmax(logits / temperature, -1)
    counts = torch.bincount(tokens, minlength=4).double()
    assert torch.allclose(counts / rows, expected.double(), atol=1.5 / rows)
    assert torch.allclose(logprobs, torch.log_softmax(logits / temperature, -1)[tokens])


def test_logprobs_are_before_truncation():
    torch.manual_seed(0)
    logits = torch.randn(64, 50)
    tokens, logprobs = sample(logits, torch.rand(64), 0.7, top_k=5, top_p=0.8)
    top5 = logits.topk(5, dim=-1).indices
    assert (top5 == tokens[:, None]).any(-1).all()
    full = torch.log_softmax(logits / 0.7, -1)
    assert torch.allclose(logprobs, full.gather(-1, tokens[:, None]).squeeze(-1))


def test_top_p_sampling_frequencies():
    probs = torch.tensor([0.125, 0.5, 0.125, 0.25])
    rows = 3000
    tokens, _ = sample(probs.log().expand(rows, -1), grid(rows), 1.0, top_p=0.7)
    assert torch.bincount(tokens, minlength=4).tolist() == [0, 2000, 0, 1000]  # 0.5 : 0.25 renormalised


def test_greedy_picks_argmax_with_temperature_one_logprobs():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, -1.0, 0.5]])
    tokens, logprobs = sample(logits, None, 0.0)
    assert tokens.tolist() == [1, 0]
    lse = [math.log(1 + math.exp(3) + math.exp(1)), math.log(math.exp(2) + math.exp(-1) + math.exp(0.5))]
    assert logprobs.tolist() == pytest.approx([3 - lse[0], 2 - lse[1]], abs=1e-6)


def test_inverse_cdf_never_picks_zero_weight():
    weights = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    top = 1 - 2.0**-24  # the largest float32 below 1
    for u in (0.0, 0.5, top):
        assert inverse_cdf(weights, torch.full((3,), u)).tolist() == [1, 0, 2]
