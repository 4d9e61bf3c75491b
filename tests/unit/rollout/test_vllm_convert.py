"""Our sampling parameters become vLLM's, and vLLM's outputs (faked here in vLLM's shapes) become
Generations with the sampled tokens' log-probs."""

from dataclasses import dataclass

import pytest

from alignkit.config.sampling import SamplingParams
from alignkit.errors import AlignkitError
from alignkit.rollout.vllm_convert import request_seeds, sampling_kwargs, to_generations


@dataclass
class Logprob:  # vllm.logprobs.Logprob
    logprob: float
    rank: int | None = None


@dataclass
class Completion:  # vllm.outputs.CompletionOutput
    index: int
    text: str
    token_ids: list[int]
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None


@dataclass
class Request:  # vllm.outputs.RequestOutput
    outputs: list[Completion]


def test_sampling_params_map_to_vllm_keywords():
    p = SamplingParams(n=4, temperature=0.7, top_p=0.9, top_k=20, max_new_tokens=32, stop=["</a>"],
                       stop_token_ids=[5], seed=None)
    (kw,) = sampling_kwargs(p, 1)
    assert kw == {
        "n": 4, "temperature": 0.7, "top_p": 0.9, "top_k": 20, "max_tokens": 32, "stop": ["</a>"],
        "stop_token_ids": [5], "include_stop_str_in_output": True, "logprobs": 0, "skip_special_tokens": True,
        "seed": None,
    }
    (plain,) = sampling_kwargs(SamplingParams(), 1)
    assert plain["stop"] is None and plain["stop_token_ids"] is None and plain["top_k"] == 0


def test_every_prompt_gets_its_own_reproducible_seed():
    kws = sampling_kwargs(SamplingParams(seed=7), 5)
    seeds = [k["seed"] for k in kws]
    assert len(set(seeds)) == 5  # vLLM adds the sample index: equal seeds would share random numbers
    assert seeds == request_seeds(7, 5) and seeds != request_seeds(8, 5)
    assert all(0 <= s < 2**62 for s in seeds)
    assert request_seeds(None, 3) == [None, None, None]


def test_outputs_become_prompt_major_generations():
    outputs = [
        Request([  # samples may come back out of index order
            Completion(1, "b", [7, 2], [{7: Logprob(-0.5)}, {2: Logprob(-0.25), 9: Logprob(-3.0)}], "stop"),
            Completion(0, "a", [3], [{3: Logprob(-1.0)}], "length"),
        ]),
        Request([
            Completion(0, "c", [4, 4], [{4: Logprob(-2.0)}, {4: Logprob(-0.125)}], "length"),
            Completion(1, "", [], [], "stop"),
        ]),
    ]
    gens = to_generations(outputs, n=2)
    assert [(g.prompt_index, g.text, g.response_ids, g.logprobs, g.finish_reason) for g in gens] == [
        (0, "a", [3], [-1.0], "length"),
        (0, "b", [7, 2], [-0.5, -0.25], "stop"),  # the sampled token's log-prob, not a top-k neighbour's
        (1, "c", [4, 4], [-2.0, -0.125], "length"),
        (1, "", [], [], "stop"),
    ]


@pytest.mark.parametrize(("completion", "message"), [
    (Completion(0, "x", [1], [{1: Logprob(-1.0)}], "abort"), "ended with 'abort'"),
    (Completion(0, "x", [1, 2], [{1: Logprob(-1.0)}], "stop"), "1 positions of log-probs for 2 tokens"),
    (Completion(0, "x", [1], None, "stop"), "none of log-probs"),
])
def test_bad_outputs_are_errors(completion, message):
    with pytest.raises(AlignkitError, match=message):
        to_generations([Request([completion])], n=1)


def test_wrong_number_of_samples_is_an_error():
    with pytest.raises(AlignkitError, match="1 samples for prompt 0, asked for 2"):
        to_generations([Request([Completion(0, "", [], [], "stop")])], n=2)
