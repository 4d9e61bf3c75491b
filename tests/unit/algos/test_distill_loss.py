"""Distillation divergences (GKD) against numbers worked out by hand on 3- and 4-token vocabularies,
the top-k tail bucket, the token-chunked evaluation, and TRL's `GKDTrainer.generalized_jsd_loss`."""

import math
from functools import partial

import pytest
import torch

from alignkit.algos.chunked import chunked_rows, rows_per_chunk
from alignkit.algos.losses.distill import (
    bucket_logprobs,
    full_vocab_terms,
    generalized_jsd,
    kl,
    reverse_kl_advantage,
    teacher_topk,
    topk_terms,
)
from alignkit.algos.positions import bucket_counts, bucket_name, position_bucket, response_positions

ln = math.log
P = [0.5, 0.25, 0.25]  # teacher
Q = [0.125, 0.125, 0.75]  # student


def logs(p):
    return torch.tensor([p], dtype=torch.float64).log()


def test_forward_and_reverse_kl_by_hand():
    # KL(P||Q) = .5 ln(.5/.125) + .25 ln(.25/.125) + .25 ln(.25/.75) = 1.25 ln2 - .25 ln3
    assert kl(logs(P), logs(Q)).item() == pytest.approx(1.25 * ln(2) - 0.25 * ln(3), abs=1e-12)
    # KL(Q||P) = .125 ln(.25) + .125 ln(.5) + .75 ln3 = .75 ln3 - .375 ln2
    assert kl(logs(Q), logs(P)).item() == pytest.approx(0.75 * ln(3) - 0.375 * ln(2), abs=1e-12)
    # GKD's endpoints: beta 0 is the forward KL(teacher || student), beta 1 the reverse KL(student || teacher)
    assert generalized_jsd(logs(Q), logs(P), 0.0).item() == pytest.approx(1.25 * ln(2) - 0.25 * ln(3), abs=1e-12)
    assert generalized_jsd(logs(Q), logs(P), 1.0).item() == pytest.approx(0.75 * ln(3) - 0.375 * ln(2), abs=1e-12)


def test_generalized_jsd_by_hand():
    # beta = 0.25: M = .25 P + .75 Q = (7/32, 5/32, 20/32)
    kl_pm = 0.5 * ln(16 / 7) + 0.25 * ln(8 / 5) + 0.25 * ln(2 / 5)
    kl_qm = 0.125 * ln(4 / 7) + 0.125 * ln(4 / 5) + 0.75 * ln(6 / 5)
    assert generalized_jsd(logs(Q), logs(P), 0.25).item() == pytest.approx(0.25 * kl_pm + 0.75 * kl_qm, abs=1e-12)
    # near the ends, JSD / beta -> forward KL and JSD / (1 - beta) -> reverse KL (why the endpoints mean them)
    fwd, rev = 1.25 * ln(2) - 0.25 * ln(3), 0.75 * ln(3) - 0.375 * ln(2)
    assert generalized_jsd(logs(Q), logs(P), 1e-6).item() / 1e-6 == pytest.approx(fwd, rel=1e-4)
    assert generalized_jsd(logs(Q), logs(P), 1 - 1e-6).item() / 1e-6 == pytest.approx(rev, rel=1e-4)
    assert generalized_jsd(logs(P), logs(P), 0.5).item() == pytest.approx(0.0, abs=1e-12)


def test_temperature_divides_both_logits():
    # logits 2 ln p at temperature 2 are the distributions p
    terms = full_vocab_terms(2 * logs(Q).float(), 2 * logs(P).float(), torch.tensor([2]), beta=0.0, temperature=2.0)
    fwd, rev = 1.25 * ln(2) - 0.25 * ln(3), 0.75 * ln(3) - 0.375 * ln(2)
    assert terms[0].tolist() == pytest.approx([fwd, fwd, rev, ln(0.75)], abs=1e-6)


def test_topk_tail_bucket_by_hand():
    # k = 1 of (.5, .25, .25): the teacher's buckets are (id 0: .5, tail: .5), the student's (.125, .875)
    ids, t = teacher_topk(logs(P).float(), 1)
    assert ids.tolist() == [[0]] and t.exp().tolist()[0] == pytest.approx([0.5, 0.5])
    terms = topk_terms(logs(Q).float(), ids, t, torch.tensor([0]), beta=0.0)
    fwd = 0.5 * ln(0.5 / 0.125) + 0.5 * ln(0.5 / 0.875)
    rev = 0.125 * ln(0.125 / 0.5) + 0.875 * ln(0.875 / 0.5)
    assert terms[0].tolist() == pytest.approx([fwd, fwd, rev, ln(0.125)], abs=1e-6)
    # renormalising both sides over the k ids would give 0 here: one id, probability 1 on both sides
    # k = 2 of 4 tokens: tail = the other two ids' mass on each side
    p4, q4 = [0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]
    ids, t = teacher_topk(logs(p4).float(), 2)
    assert ids.tolist() == [[0, 1]] and t.exp().tolist()[0] == pytest.approx([0.4, 0.3, 0.3])
    assert bucket_logprobs(logs(q4).float(), ids).exp().tolist()[0] == pytest.approx([0.1, 0.2, 0.7])
    terms = topk_terms(logs(q4).float(), ids, t, torch.tensor([3]), beta=1.0)
    assert terms[0, 0].item() == pytest.approx(0.1 * ln(0.25) + 0.2 * ln(2 / 3) + 0.7 * ln(7 / 3), abs=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_topk_over_the_whole_vocabulary_equals_full(beta):
    torch.manual_seed(0)
    s, t, y = torch.randn(6, 5, requires_grad=True), torch.randn(6, 5), torch.randint(5, (6,))
    full = full_vocab_terms(s, t, y, beta=beta, temperature=0.7)
    ids, tb = teacher_topk(t, 5, 0.7)  # the tail is empty on both sides
    top = topk_terms(s, ids, tb, y, beta=beta, temperature=0.7)
    assert torch.allclose(full, top, atol=1e-5)
    (g,) = torch.autograd.grad(top[:, 0].sum(), s)
    (g_full,) = torch.autograd.grad(full[:, 0].sum(), s)
    assert torch.isfinite(g).all() and torch.allclose(g, g_full, atol=1e-5)


def test_topk_divergence_is_at_most_the_full_one():
    # coarsening to k + 1 outcomes can only lose information (data-processing inequality)
    torch.manual_seed(1)
    s, t, y = torch.randn(32, 50), torch.randn(32, 50) * 3, torch.randint(50, (32,))
    full = full_vocab_terms(s, t, y, beta=0.5)[:, :3]
    last = torch.zeros_like(full)
    for k in (1, 5, 20, 49):
        ids, tb = teacher_topk(t, k)
        top = topk_terms(s, ids, tb, y, beta=0.5)[:, :3]
        assert (top >= -1e-6).all() and (top <= full + 1e-5).all() and (top >= last - 1e-5).all()
        last = top


def test_chunked_rows_equal_one_pass_with_the_same_gradient():
    torch.manual_seed(2)
    s = torch.randn(7, 9, dtype=torch.float64, requires_grad=True)
    t, y = torch.randn(7, 9, dtype=torch.float64), torch.randint(9, (7,))
    fn = partial(full_vocab_terms, beta=0.4, temperature=1.3)
    weights = torch.randn(7, 4, dtype=torch.float64)
    whole = fn(s, t, y)
    (g_whole,) = torch.autograd.grad((whole * weights).sum(), s)
    for chunk in (1, 3, 7, 100):
        part = chunked_rows(fn, s, t, y, chunk=chunk)
        (g,) = torch.autograd.grad((part * weights).sum(), s)
        assert torch.allclose(part, whole, atol=1e-12) and torch.allclose(g, g_whole, atol=1e-12)
    assert chunked_rows(fn, s[:0], t[:0], y[:0], chunk=3).shape == (0, 4)
    assert rows_per_chunk(151936) == 441 and rows_per_chunk(10**9) == 1


def test_reverse_kl_advantage_by_hand():
    student = torch.tensor([[-1.0, -2.0, -0.5]])
    teacher = torch.tensor([[-0.5, -3.0, -0.1]])
    adv = reverse_kl_advantage(student, teacher, torch.tensor([[1.0, 1.0, 0.0]]))
    assert adv.tolist() == [[0.5, -1.0, 0.0]]  # better than the student thinks: +; worse: -


def test_position_buckets():
    pos = torch.tensor([0, 1, 2, 3, 4, 7, 8, 511, 512, 10**6])
    assert position_bucket(pos).tolist() == [0, 1, 2, 2, 3, 3, 4, 9, 10, 10]
    assert [bucket_name(b) for b in (0, 1, 2, 3, 9, 10)] == ["0", "1", "2-3", "4-7", "256-511", "512+"]
    # two samples (seg 0 from position 3, seg 1 from position 5) in any order
    seg, p = torch.tensor([1, 0, 0, 1, 0]), torch.tensor([5, 3, 4, 7, 6])
    assert response_positions(seg, p).tolist() == [0, 0, 1, 2, 3]
    assert bucket_counts(torch.tensor([0, 0, 1, 2, 3])).tolist()[:4] == [2, 1, 2, 0]


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_generalized_jsd_matches_trl(beta, temperature):
    gkd = pytest.importorskip("trl.experimental.gkd.gkd_trainer")
    torch.manual_seed(3)
    student = torch.randn(2, 5, 11, requires_grad=True)
    teacher = torch.randn(2, 5, 11) * 2
    labels = torch.randint(11, (2, 5))
    labels[0, :2] = -100  # the prompt: not scored
    ref = gkd.GKDTrainer.generalized_jsd_loss(student, teacher, labels, beta=beta, temperature=temperature)
    keep = labels != -100
    terms = full_vocab_terms(student[keep], teacher[keep], labels[keep], beta=beta, temperature=temperature)
    ours = terms[:, 0].sum() / keep.sum()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)
    (g_ref,) = torch.autograd.grad(ref, student)
    (g,) = torch.autograd.grad(ours, student)
    assert torch.allclose(g, g_ref, atol=1e-6)


def test_chunked_rows_keep_no_vocabulary_sized_intermediates_for_backward():
    # what autograd saves for the backward pass: the chunked loss keeps its inputs (by reference) and
    # nothing else; the same loss in one pass keeps several (tokens, vocab) float tensors
    s = torch.randn(64, 1000, requires_grad=True)
    t, y = torch.randn(64, 1000), torch.randint(1000, (64,))
    fn = partial(full_vocab_terms, beta=0.5)

    def saved_numel(run) -> int:
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda x: sizes.append(x.numel()) or x, lambda x: x):
            run()
        return sum(sizes)

    assert saved_numel(lambda: chunked_rows(fn, s, t, y, chunk=8)) <= s.numel() + t.numel() + y.numel()
    assert saved_numel(lambda: fn(s, t, y)) > 4 * s.numel()
