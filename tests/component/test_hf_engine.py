"""HFEngine (alignkit.rollout.hf) on the tiny Llama: exactness against transformers, stops, batching.

The model lives on the `device` fixture (`pytest --device cuda` runs these on a GPU; bench/gpu)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache

from alignkit.config.sampling import SamplingParams
from alignkit.errors import AlignkitError
from alignkit.rollout.hf import HFEngine
from alignkit.rollout.kv_cache import reserved_cache

TEXTS = ["12+7=", "sort: 4 1 3 2 =", "What is the answer to the question", "hi"]


@pytest.fixture(scope="module")
def model(tiny_dir, device):
    return AutoModelForCausalLM.from_pretrained(tiny_dir).to(device).eval()


@pytest.fixture(scope="module")
def engine(model, tokenizer):
    return HFEngine(model, tokenizer)


@pytest.fixture(scope="module")
def prompts(tokenizer):
    return [tokenizer(t)["input_ids"] for t in TEXTS]  # ragged: 4 different lengths


def sampled(**kw) -> SamplingParams:
    return SamplingParams(**{"n": 3, "temperature": 1.0, "max_new_tokens": 16, "seed": 7, **kw})


def left_pad(rows, pad):
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    return ids, (torch.arange(width)[None, :] >= torch.tensor([width - len(r) for r in rows])[:, None]).long()


def teacher_forced(model, prompt, response, temperature):
    """log_softmax(logits / T) of each response token given everything before it (no padding, no cache),
    on the CPU."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + response], device=model.device)).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits.cpu() / temperature, -1).gather(-1, torch.tensor(response)[:, None]).squeeze(-1)


def test_greedy_matches_transformers_generate(model, tokenizer, engine, prompts):
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    with torch.no_grad():
        ref = model.generate(
            input_ids=ids.to(model.device),
            attention_mask=mask.to(model.device),
            max_new_tokens=12,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            output_scores=True,
            return_dict_in_generate=True,
        )
    eos = set(model.generation_config.eos_token_id) | {tokenizer.eos_token_id}
    ours = engine.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=12))
    ref_logprobs = torch.log_softmax(torch.stack(ref.scores, 1), -1).cpu()
    for i, g in enumerate(ours):
        row = ref.sequences[i, ids.shape[1] :].tolist()
        end = next((k + 1 for k, t in enumerate(row) if t in eos), len(row))
        assert g.response_ids == row[:end]
        expected = ref_logprobs[i, torch.arange(end), torch.tensor(row[:end])]
        assert torch.allclose(torch.tensor(g.logprobs), expected, atol=1e-4)
        assert g.text == tokenizer.decode(row[:end], skip_special_tokens=True)


def test_sampled_logprobs_match_teacher_forcing(model, engine, prompts):
    params = sampled(temperature=0.7, top_k=40, top_p=0.9)
    for g in engine.generate(prompts, params):
        expected = teacher_forced(model, prompts[g.prompt_index], g.response_ids, 0.7)
        assert torch.allclose(torch.tensor(g.logprobs), expected, atol=1e-4)


def test_seeded_samples_repeat_and_ignore_microbatching(model, tokenizer, engine, prompts):
    first = engine.generate(prompts, sampled())
    assert engine.generate(prompts, sampled()) == first
    assert engine.generate(prompts, sampled(seed=8)) != first
    chunked = HFEngine(model, tokenizer, max_batch=2).generate(prompts, sampled())
    assert [g.response_ids for g in chunked] == [g.response_ids for g in first]
    for a, b in zip(chunked, first, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


def test_n_samples_are_prompt_major(engine, prompts):
    out = engine.generate(prompts, sampled(n=3))
    assert [g.prompt_index for g in out] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert len({tuple(g.response_ids) for g in out[:3]}) == 3  # independent samples


def test_max_new_tokens_ends_with_length(engine, prompts):
    out = engine.generate(prompts, sampled(max_new_tokens=5, n=1))
    assert all(len(g.response_ids) == 5 and g.finish_reason == "length" for g in out)


def _ascii_piece(tokenizer, ids: list[int]) -> str:
    """The text of some token from the middle of a response that is plain letters (a clean stop string)."""
    for t in ids[3:]:
        piece = tokenizer.decode([t])
        if piece.strip().isalpha() and piece.isascii():
            return piece.strip()
    raise AssertionError("no alphabetic token in the response")


def test_stop_strings_cut_after_the_string(engine, tokenizer, prompts):
    full = engine.generate(prompts, sampled(max_new_tokens=24))
    stops = [_ascii_piece(tokenizer, full[0].response_ids), _ascii_piece(tokenizer, full[4].response_ids)]
    cut = engine.generate(prompts, sampled(max_new_tokens=24, stop=stops))
    stopped = 0
    for f, c in zip(full, cut, strict=True):
        # where the text first contains a stop string: that token is the last one kept
        end = next(
            (k for k in range(1, 25) if any(s in tokenizer.decode(f.response_ids[:k]) for s in stops)), None
        )
        # logprobs only approximately: the batch shrinks differently, which moves float rounding
        if end is None:
            assert (c.response_ids, c.text, c.finish_reason) == (f.response_ids, f.text, f.finish_reason)
            assert c.logprobs == pytest.approx(f.logprobs, abs=1e-5)
            continue
        stopped += 1
        assert c.response_ids == f.response_ids[:end] and c.logprobs == pytest.approx(
            f.logprobs[:end], abs=1e-5
        )
        assert c.finish_reason == "stop"
        text = tokenizer.decode(f.response_ids[:end])
        first_end = min(text.find(s) + len(s) for s in stops if s in text)
        assert c.text == text[:first_end] and any(c.text.endswith(s) for s in stops)
    assert stopped >= 2


def test_stop_token_ids_and_generation_config_eos(tiny_dir, tokenizer, engine, prompts, device):
    full = engine.generate(prompts, sampled())
    stop_id = full[0].response_ids[4]
    out = engine.generate(prompts, sampled(stop_token_ids=[stop_id]))
    assert out[0].response_ids == full[0].response_ids[: full[0].response_ids.index(stop_id) + 1]
    assert out[0].finish_reason == "stop"

    model = AutoModelForCausalLM.from_pretrained(tiny_dir).to(device)  # its own copy: generation_config is changed
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, stop_id]
    via_config = HFEngine(model, tokenizer).generate(prompts, sampled())
    assert via_config[0].response_ids == out[0].response_ids and via_config[0].finish_reason == "stop"


def test_finished_rows_leave_the_batch(model, tokenizer, prompts):
    engine = HFEngine(model, tokenizer)
    full = engine.generate(prompts, sampled(n=4))
    stop_ids = [full[i].response_ids[k] for i, k in enumerate([1, 3, 5, 7, 9])]  # rows end at different steps
    sizes = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kw: sizes.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        out = engine.generate(prompts, sampled(n=4, stop_token_ids=stop_ids))
    finally:
        hook.remove()
    assert sizes[0] == len(prompts)  # one prefill per distinct prompt, shared by its n samples
    assert sizes[1] == len(out) - sum(len(g.response_ids) == 1 for g in out)
    assert sizes[1:] == sorted(sizes[1:], reverse=True) and sizes[-1] < sizes[1]
    # a row of length L is in exactly L - 1 decode steps: finished rows cost nothing
    assert sum(sizes[1:]) == sum(len(g.response_ids) - 1 for g in out)
    assert any(g.finish_reason == "stop" for g in out) and any(g.finish_reason == "length" for g in out)


def test_load_weights(tiny_dir, tokenizer, prompts, device):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).to(device)
    engine = HFEngine(model, tokenizer)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=8)
    before = engine.generate(prompts, greedy)
    new = {n: p.detach() + 0.05 * torch.randn_like(p) for n, p in model.named_parameters()}
    engine.load_weights(new.items())
    after = engine.generate(prompts, greedy)
    assert [g.logprobs for g in after] != [g.logprobs for g in before]
    assert torch.equal(dict(model.named_parameters())["model.norm.weight"], new["model.norm.weight"])

    with pytest.raises(AlignkitError) as bad_name:
        engine.load_weights([("model.nope.weight", torch.zeros(1))])
    assert (
        str(bad_name.value)
        == "load_weights: unknown parameter 'model.nope.weight': the rollout model has no such name"
    )
    with pytest.raises(
        AlignkitError, match=r"'model.norm.weight' has shape \(3,\) but the rollout model's is \(64,\)"
    ):
        engine.load_weights([("model.norm.weight", torch.zeros(3))])
    engine.sleep()
    engine.wake_up()


def test_rejects_bad_input(engine, prompts):
    with pytest.raises(AlignkitError, match="prompt 1 is empty"):
        engine.generate([prompts[0], []], sampled())
    with pytest.raises(AlignkitError, match="top_p must be in"):
        engine.generate(prompts, sampled(top_p=0.0))
    assert engine.generate([], sampled()) == []


def test_reserved_cache_matches_dynamic_cache_past_its_reservation(model, prompts):
    ids = torch.tensor([prompts[2]], device=model.device)
    steps = torch.tensor([[5], [9], [11]], device=model.device)
    logits = {}
    for name, cache in [
        ("dynamic", DynamicCache(config=model.config)),
        ("reserved", reserved_cache(model.config, 3)),
    ]:
        with torch.no_grad():
            out = [model(ids, past_key_values=cache, use_cache=True).logits[:, -1]]
            out += [model(s[None], past_key_values=cache, use_cache=True).logits[:, -1] for s in steps]
        logits[name] = torch.cat(out)
    assert torch.allclose(logits["dynamic"], logits["reserved"], atol=1e-5)
