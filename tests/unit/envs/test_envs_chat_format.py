"""The token rule after a sampled turn, on a Qwen3-style template (tools, dropped <think>, enable_thinking),
and a tool episode whose trained ids are exactly the sampled ids although the template, re-rendering
the conversation, would drop the first turn's reasoning."""

from __future__ import annotations

import copy
import json

import pytest
from envs_helpers import ScriptedEngine, qwen3_tokenizer

from alignkit.config.sampling import SamplingParams
from alignkit.envs.chat_format import ChatFormat, RawFormat
from alignkit.envs.loop import Episode, Limits, run_episodes
from alignkit.envs.tool_env import ToolEnv
from alignkit.envs.tools import tool_from_function
from alignkit.errors import ModelError
from alignkit.rewards.rules import build_rule


def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: The first factor.
        b: The second factor.
    """
    return a * b


@pytest.fixture(scope="module")
def qwen(tokenizer):
    return qwen3_tokenizer(tokenizer)


def test_prompt_ids_are_the_template_with_tools(qwen):
    fmt = ChatFormat(qwen, [tool_from_function(multiply).schema])
    ids = fmt.prompt_ids([{"role": "user", "content": "3 times 4?"}])
    text = qwen.decode(ids)
    assert text.startswith("<|im_start|>system\n# Tools\n") and '"name": "multiply"' in text
    assert text.endswith("<|im_start|>user\n3 times 4?<|im_end|>\n<|im_start|>assistant\n")


def test_continuation_after_the_models_own_end_token(qwen):
    im_end = qwen.convert_tokens_to_ids("<|im_end|>")
    tool_results = [{"role": "tool", "content": "12"}, {"role": "tool", "content": "7"}]
    ids = ChatFormat(qwen).continuation_ids(tool_results, im_end, model_ended=True)
    # the model sampled <|im_end|>; the template adds its "\n", then both results in ONE user turn
    assert qwen.decode(ids) == ("\n<|im_start|>user\n<tool_response>\n12\n</tool_response>\n<tool_response>\n7\n"
                                "</tool_response><|im_end|>\n<|im_start|>assistant\n")


def test_continuation_after_a_cut_turn_closes_it(qwen):
    some_token = qwen("a")["input_ids"][0]
    ids = ChatFormat(qwen).continuation_ids([{"role": "user", "content": "go on"}], some_token, model_ended=True)
    assert qwen.decode(ids) == "<|im_end|>\n<|im_start|>user\ngo on<|im_end|>\n<|im_start|>assistant\n"
    cut = ChatFormat(qwen).continuation_ids([{"role": "user", "content": "go on"}], None, model_ended=False)
    assert cut == ids


def test_enable_thinking_false_is_part_of_the_added_ids(qwen):
    fmt = ChatFormat(qwen, template_kwargs={"enable_thinking": False})
    ids = fmt.continuation_ids([{"role": "user", "content": "next"}], None, model_ended=False)
    assert qwen.decode(ids).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_raw_format_without_template(tokenizer):
    fmt = RawFormat(tokenizer)
    assert fmt.prompt_ids([{"role": "user", "content": "12+3="}]) == tokenizer("12+3=")["input_ids"]
    assert fmt.continuation_ids([{"role": "user", "content": " wrong, again:"}], 4, True) == \
        tokenizer(" wrong, again:", add_special_tokens=False)["input_ids"]
    assert fmt.continuation_ids([], 4, True) == []


def test_template_that_rewrites_content_is_refused(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] | upper }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant: {% endif %}")
    with pytest.raises(ModelError) as e:
        ChatFormat(tok).continuation_ids([{"role": "user", "content": "x"}], None, False)
    assert str(e.value) == ("multi-turn rollout: the chat template does not write an assistant message's content "
                            "verbatim, so the tokens it adds after a turn cannot be found")


def _think_then_call(prompt: str) -> str:
    """Turn 1: reasoning, then a tool call; turn 2 (after the result): reasoning, then the answer."""
    if "<tool_response>" not in prompt:
        call = json.dumps({"name": "multiply", "arguments": {"a": 6, "b": 7}})
        return f"<think>\nfirst I multiply\n</think>\n\n<tool_call>\n{call}\n</tool_call>"
    return "<think>\nthe tool said 42\n</think>\n\n42"


def test_tool_episode_trains_exactly_the_sampled_ids(qwen):
    engine = ScriptedEngine(qwen, _think_then_call)
    make_env = lambda: ToolEnv([tool_from_function(multiply)], build_rule(r"format:<think>.*</think>\s*42"))  # noqa: E731
    episode = Episode({"prompt": "What is 6 times 7?", "label": "42"})
    (traj,) = run_episodes(engine, qwen, make_env, [episode], SamplingParams(max_new_tokens=256), Limits())
    assert not traj.failed and traj.tool_calls_ok == 1 and traj.tool_calls_failed == 0
    assert len(traj.turns) == 2 and traj.turn_rewards == [0.0, 1.0]
    for turn, sampled in zip(traj.turns, engine.samples, strict=True):
        assert traj.ids[turn.start:turn.end] == sampled
    assert sum(traj.trained) == sum(len(s) for s in engine.samples)
    between = qwen.decode(traj.ids[traj.turns[0].end:traj.turns[1].start])
    assert between == "\n<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n<|im_start|>assistant\n"


class Retry:
    """Says "Wrong, try again." (a new user query) after the first answer; ends after the second."""

    def reset(self, seed=None, **record):
        self.k = 0
        return "Name a prime.", {}

    def step(self, action):
        self.k += 1
        return "Wrong, try again.", float(self.k == 2), self.k == 2, False, {}


def test_trained_ids_are_the_sampled_ids_although_the_template_drops_reasoning(qwen):
    replies = iter(["<think>\nmaybe four\n</think>\n\n4", "<think>\nthen five\n</think>\n\n5"])
    engine = ScriptedEngine(qwen, lambda prompt: next(replies))
    (traj,) = run_episodes(engine, qwen, Retry, [Episode({})], SamplingParams(max_new_tokens=256), Limits())
    assert traj.reward == 1.0 and len(traj.turns) == 2
    for turn, sampled in zip(traj.turns, engine.samples, strict=True):
        assert traj.ids[turn.start:turn.end] == sampled
    # What the model saw when it sampled turn 2 holds turn 1's reasoning ...
    assert "maybe four" in qwen.decode(traj.ids[: traj.turns[1].start])
    # ... but the template, rendering the conversation, drops the reasoning of a turn before the last
    # user query: re-tokenised text would train tokens the model never sampled and miss ones it did.
    conversation = [
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": qwen.decode(engine.samples[0], skip_special_tokens=True)},
        {"role": "user", "content": "Wrong, try again."},
        {"role": "assistant", "content": qwen.decode(engine.samples[1], skip_special_tokens=True)},
    ]
    rendered = qwen.apply_chat_template(conversation, tokenize=False)
    assert "maybe four" not in rendered and "then five" in rendered
    assert qwen.decode(traj.ids) == rendered.replace("<|im_start|>assistant\n4", "<|im_start|>assistant\n"
                                                      "<think>\nmaybe four\n</think>\n\n4").removesuffix("\n")


LLAMA3 = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
          "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
GEMMA = ("{{ bos_token }}{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
         "<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
         "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


@pytest.mark.parametrize(("template", "specials", "end", "after_end", "after_cut"), [
    (LLAMA3, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "<|eot_id|>",
     "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
     "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    (GEMMA, ["<start_of_turn>", "<end_of_turn>"], "<end_of_turn>",
     "\n<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
     "<end_of_turn>\n<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"),
])
def test_other_template_families(tokenizer, template, specials, end, after_end, after_cut):
    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": specials})
    tok.chat_template = template
    fmt = ChatFormat(tok)
    new = [{"role": "user", "content": "hi"}]
    assert tok.decode(fmt.continuation_ids(new, tok.convert_tokens_to_ids(end), model_ended=True)) == after_end
    assert tok.decode(fmt.continuation_ids(new, None, model_ended=False)) == after_cut
