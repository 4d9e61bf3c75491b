"""Padding-free packing: a packed forward equals the separate forwards."""

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from alignkit.data.packing import assign_rows, pack, shared_prefix_len
from alignkit.data.samples import TokenizedSample
from alignkit.models.forward import (
    causal_forward,
    causal_logprobs,
    gather_logprobs,
    reward_scores,
    segment_first_index,
    segment_last_index,
    segment_sum,
    sequence_logps,
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


def test_packed_forward_equals_separate_forwards(tiny_dir, device):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).to(device).eval()
    seqs = [torch.randint(5, 300, (n,)).tolist() for n in (7, 3, 11, 5)]
    packed = pack([sample(s) for s in seqs], pad_id=0, capacity=16)
    assert packed.input_ids.shape[0] < len(seqs)  # really packed
    with torch.no_grad():
        lp = causal_logprobs(model, packed.to(device)).cpu()
        for i, s in enumerate(seqs):
            ids = torch.tensor([s], device=device)
            alone = gather_logprobs(model(ids).logits, ids)[0].cpu()
            got = lp[packed.seg_ids == i]
            torch.testing.assert_close(got[1:], alone[1:], rtol=1e-5, atol=1e-5)


def test_segment_helpers():
    seg = torch.tensor([[0, 0, 1, -1], [2, 2, 2, -1]])
    vals = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 6.0, 100.0]])
    assert segment_sum(vals, seg, 3).tolist() == [3.0, 3.0, 15.0]
    assert segment_last_index(seg, 3).tolist() == [1, 2, 6]
    assert segment_first_index(seg, 3).tolist() == [0, 2, 4]
    assert segment_sum(vals, seg, 2).tolist() == [3.0, 3.0]  # segments from n on (shared prompts) left out


def test_entropy_is_differentiable_only_when_trained(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    batch = pack([sample([5, 6, 7, 8])], pad_id=0)
    lp, logged = causal_forward(model, batch, with_entropy=True)
    assert lp.requires_grad and not logged.requires_grad  # logging builds no graph over the softmax
    _, bonus = causal_forward(model, batch, with_entropy=True, entropy_grad=True)
    assert bonus.requires_grad
    torch.testing.assert_close(logged, bonus.detach())


def part(ids, mask):
    return TokenizedSample(ids, mask, "t")


def test_shared_prefix_stops_at_the_first_target_or_difference():
    chosen, rejected = part([1, 2, 3, 4], [0, 0, 1, 1]), part([1, 2, 5], [0, 0, 1])
    assert shared_prefix_len([chosen, rejected]) == 2
    assert shared_prefix_len([chosen, part([1, 2, 3, 9], [0, 0, 0, 1])]) == 2  # chosen's target at 2
    assert shared_prefix_len([chosen, part([7, 2, 5], [0, 0, 1])]) == 0
    assert shared_prefix_len([chosen]) == 0


def test_pack_shares_a_pairs_prompt():
    chosen, rejected = part([1, 2, 3, 4], [0, 0, 1, 1]), part([1, 2, 5], [0, 0, 1])
    b = pack([chosen, rejected], pad_id=0, capacity=8, groups=[[0, 1]])
    assert b.input_ids.tolist() == [[1, 2, 3, 4, 5]]
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 2]]  # the rejected side continues the prompt
    assert b.seg_ids.tolist() == [[2, 2, 0, 0, 1]]  # the prompt is segment n_samples + group
    assert b.parent.tolist() == [2, 2, -1]
    assert b.loss_mask.tolist() == [[0, 0, 1, 1, 1]]
    assert b.n_tokens == 5
    # Nothing to share: the samples are packed alone and the batch says so.
    alone = pack([chosen, part([7, 5], [0, 1])], pad_id=0, capacity=8, groups=[[0, 1]])
    assert alone.parent is None and alone.position_ids.tolist() == [[0, 1, 2, 3, 0, 1]]


def test_shared_prompt_forward_equals_separate_forwards(tiny_dir):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    pairs = []
    for p, c, r in ((5, 3, 4), (9, 2, 6), (2, 5, 1), (7, 4, 4)):
        prompt = torch.randint(5, 300, (p,)).tolist()
        pairs.append([part(prompt + torch.randint(5, 300, (n,)).tolist(), [0] * p + [1] * n) for n in (c, r)])
    samples = [pr[0] for pr in pairs] + [pr[1] for pr in pairs]
    groups = [[i, len(pairs) + i] for i in range(len(pairs))]
    shared = pack(samples, pad_id=0, capacity=20, groups=groups)
    plain = pack(samples, pad_id=0, capacity=20)
    assert shared.parent is not None and shared.n_tokens < plain.n_tokens
    with torch.no_grad():
        for want, got in zip(sequence_logps(model, plain), sequence_logps(model, shared), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        _, ent_plain = causal_forward(model, plain, with_entropy=True)
        _, ent_shared = causal_forward(model, shared, with_entropy=True)
    # Entropy of the first response token of every sample: predicted from the prompt's last token.
    for s, smp in enumerate(samples):
        t = smp.loss_mask.index(1)
        want = ent_plain[(plain.seg_ids == s) & (plain.position_ids == t)]
        got = ent_shared[(shared.seg_ids == s) & (shared.position_ids == t)]
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_shared_prompt_reward_scores_equal_separate_ones(tiny_dir):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_dir, num_labels=1).eval()
    prompt = [11, 12, 13, 14]
    pair = [part(prompt + r, [0] * 4 + [1] * len(r)) for r in ([21, 22, 23], [31, 32])]
    shared = pack(pair, pad_id=0, capacity=16, groups=[[0, 1]])
    assert shared.parent is not None
    with torch.no_grad():
        torch.testing.assert_close(reward_scores(model, shared), reward_scores(model, pack(pair, pad_id=0)),
                                   rtol=1e-5, atol=1e-5)
