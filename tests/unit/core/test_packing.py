"""Padding-free packing: a packed forward equals the separate forwards."""

import torch
from transformers import AutoModelForCausalLM

from alignkit.data.packing import assign_rows, pack
from alignkit.data.samples import TokenizedSample
from alignkit.models.forward import (
    causal_forward,
    causal_logprobs,
    gather_logprobs,
    segment_last_index,
    segment_sum,
)


def sample(ids):
    return TokenizedSample(ids, [1] * len(ids), "t")


def test_first_fit_decreasing_rows():
    assert assign_rows([5, 3, 4, 2], capacity=7, packing=True) == [[0, 3], [2, 1]]
    assert assign_rows([5, 3], capacity=7, packing=False) == [[0], [1]]


def test_pack_layout():
    b = pack([sample([1, 2, 3]), sample([4, 5])], pad_id=0, capacity=8)
    assert b.input_ids.tolist() == [[1, 2, 3, 4, 5]]
    assert b.position_ids.tolist() == [[0, 1, 2, 0, 1]]
    assert b.seg_ids.tolist() == [[0, 0, 0, 1, 1]]
    # The first token of each sample is never a target.
    assert b.loss_mask.tolist() == [[0, 1, 1, 0, 1]]
    assert b.n_tokens == 5


def test_packed_forward_equals_separate_forwards(tiny_dir):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    seqs = [torch.randint(5, 300, (n,)).tolist() for n in (7, 3, 11, 5)]
    packed = pack([sample(s) for s in seqs], pad_id=0, capacity=16)
    assert packed.input_ids.shape[0] < len(seqs)  # really packed
    with torch.no_grad():
        lp = causal_logprobs(model, packed)
        for i, s in enumerate(seqs):
            alone = gather_logprobs(model(torch.tensor([s])).logits, torch.tensor([s]))[0]
            got = lp[packed.seg_ids == i]
            torch.testing.assert_close(got[1:], alone[1:], rtol=1e-5, atol=1e-5)


def test_segment_helpers():
    seg = torch.tensor([[0, 0, 1, -1], [2, 2, 2, -1]])
    vals = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 6.0, 100.0]])
    assert segment_sum(vals, seg, 3).tolist() == [3.0, 3.0, 15.0]
    assert segment_last_index(seg, 3).tolist() == [1, 2, 6]


def test_entropy_is_differentiable_only_when_trained(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    batch = pack([sample([5, 6, 7, 8])], pad_id=0)
    lp, logged = causal_forward(model, batch, with_entropy=True)
    assert lp.requires_grad and not logged.requires_grad  # logging builds no graph over the softmax
    _, bonus = causal_forward(model, batch, with_entropy=True, entropy_grad=True)
    assert bonus.requires_grad
    torch.testing.assert_close(logged, bonus.detach())
