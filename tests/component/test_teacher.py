"""The teacher's scores on a packed batch against a plain forward of each sample: target log-probs, top-k
ids and bucket log-probs, the logits cut to the shared width, and the per-token log-probs that
on-policy distillation reads."""

import torch
from transformers import AutoModelForCausalLM

from alignkit.data.packing import pack
from alignkit.data.tokenize import encode
from alignkit.models.targets import targets_of
from alignkit.models.teacher import Teacher

T = 0.8


def test_scores_match_separate_forwards(tiny_dir, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    samples = [encode(tokenizer, p, r, False, "") for p, r in (("12+7=", "19"), ("sort: 3 1 2 =", "1 2 3"))]
    batch = pack(samples, tokenizer.pad_token_id, capacity=64)  # both in one row
    assert batch.input_ids.shape[0] == 1
    width = model.config.vocab_size - 3  # as if the last 3 rows were one model's padding
    expected_lp, expected_logits = [], []
    with torch.no_grad():
        for s in samples:
            logits = model(torch.tensor([s.input_ids])).logits[0, :-1, :width]
            keep = torch.tensor(s.loss_mask[1:]) > 0
            expected_logits.append(logits[keep])
            lp = torch.log_softmax(logits / T, -1).gather(-1, torch.tensor(s.input_ids[1:])[:, None])[:, 0]
            expected_lp.append(lp[keep])
    order = list(dict.fromkeys(targets_of(batch).seg_ids.tolist()))  # packing put the longer sample first
    assert order == [1, 0]
    logits, lp = torch.cat([expected_logits[i] for i in order]), torch.cat([expected_lp[i] for i in order])
    full = Teacher(model, width, top_k=0, temperature=T).score(batch)
    assert torch.allclose(full.logits, logits, atol=1e-5) and torch.allclose(full.target_logprobs, lp, atol=1e-5)
    top = Teacher(model, width, top_k=4, temperature=T).score(batch)
    probs = torch.softmax(logits / T, -1)
    values, ids = probs.topk(4)
    assert torch.equal(top.topk_ids, ids) and torch.allclose(top.target_logprobs, lp, atol=1e-5)
    assert torch.allclose(top.topk_logprobs.exp(), torch.cat([values, 1 - values.sum(-1, keepdim=True)], -1), atol=1e-5)
    # the per-token log-probs of on-policy distillation hold the same numbers at the targets (full vocabulary
    # here, so compare with the model's own width)
    per_token = Teacher(model, model.config.vocab_size, temperature=T).token_logprobs(batch)
    own = Teacher(model, model.config.vocab_size, temperature=T).score(batch).target_logprobs
    assert torch.allclose(per_token[:, 1:][batch.loss_mask[:, 1:] > 0], own, atol=1e-5)
    assert targets_of(batch).ids.tolist() == [t for i in order for t, m in zip(samples[i].input_ids, samples[i].loss_mask,
                                                                              strict=True) if m]


def test_scores_of_samples_that_share_a_prompt(tiny_dir, tokenizer):
    # two responses to one prompt, the prompt once in the row: the second response's first token is
    # predicted by the prompt's last token, not by the token before it in the row
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    samples = [encode(tokenizer, "12+7=", r, False, "") for r in ("19", "20 or so")]
    shared = pack(samples, tokenizer.pad_token_id, capacity=64, groups=[[0, 1]])
    alone = pack(samples, tokenizer.pad_token_id, capacity=64, packing=False)
    assert shared.parent is not None and shared.input_ids.shape[0] == 1
    teacher = Teacher(model, model.config.vocab_size, temperature=T)
    a, b = teacher.score(shared), teacher.score(alone)
    assert torch.equal(targets_of(shared).ids, targets_of(alone).ids)
    assert torch.allclose(a.logits, b.logits, atol=1e-5) and torch.allclose(a.target_logprobs, b.target_logprobs, atol=1e-5)
