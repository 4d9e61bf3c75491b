"""Chat templates as they are (data/chat.py): each assistant turn trains as the template renders it when
that turn is the last one. A Qwen3-style template (tests/templates/qwen3.jinja) drops the reasoning of
earlier turns, so its multi-turn records train as one row per turn; ChatML records stay one row."""

import pytest
from transformers import AutoTokenizer

from alignkit.config.schema import DataConfig
from alignkit.data.prompts import to_prompt
from alignkit.data.readers import Record
from alignkit.data.tokenize import sft_sample, tokenize_pairs, tokenize_unpaired
from alignkit.errors import DataError

SYSTEM = {"role": "system", "content": "be brief"}
Q1, Q2 = {"role": "user", "content": "2+2?"}, {"role": "user", "content": "and 3+3?"}
A1 = {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"}
A2 = {"role": "assistant", "content": "<think>\nadd again\n</think>\n\n6"}
HEAD = "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
TOOL = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def qwen3(qwen3_dir):
    return AutoTokenizer.from_pretrained(qwen3_dir)


def rows(tok, sample):
    """(decoded row, decoded trained tokens) of each row of an SFT record."""
    return [(tok.decode(s.input_ids), tok.decode([t for t, m in zip(s.input_ids, s.loss_mask, strict=True) if m]))
            for s in sample.samples]


def sft(tok, data, **cfg):
    return sft_sample(Record(data, "x.jsonl:1"), tok, DataConfig(**cfg))


def test_qwen3_multi_turn_trains_each_turn_as_rendered_last(qwen3):
    got = rows(qwen3, sft(qwen3, {"messages": [SYSTEM, Q1, A1, Q2, A2]}))
    assert got == [
        # turn 1 as the model samples it after Q1: with its reasoning
        (HEAD + "<think>\nadd\n</think>\n\n4<|im_end|>\n", "<think>\nadd\n</think>\n\n4<|im_end|>\n"),
        # turn 2 after the history as the template shows it: turn 1's reasoning dropped, not trained
        (HEAD + "4<|im_end|>\n<|im_start|>user\nand 3+3?<|im_end|>\n<|im_start|>assistant\n"
         "<think>\nadd again\n</think>\n\n6<|im_end|>\n", "<think>\nadd again\n</think>\n\n6<|im_end|>\n"),
    ]


def test_chatml_multi_turn_stays_one_row(tokenizer):
    got = rows(tokenizer, sft(tokenizer, {"messages": [SYSTEM, Q1, A1, Q2, A2]}))
    assert len(got) == 1
    assert got[0][1] == "<think>\nadd\n</think>\n\n4<|im_end|>\n<think>\nadd again\n</think>\n\n6<|im_end|>\n"


def test_enable_thinking_false_puts_the_empty_think_block_in_the_prompt(qwen3):
    plain = [Q1, {"role": "assistant", "content": "4"}, Q2, {"role": "assistant", "content": "6"}]
    got = rows(qwen3, sft(qwen3, {"messages": plain}, chat_template_kwargs={"enable_thinking": False}))
    assert [masked for _, masked in got] == ["4<|im_end|>\n", "6<|im_end|>\n"]
    assert got[1][0].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n6<|im_end|>\n")
    prompt = to_prompt(Record({"prompt": [Q1]}, "p.jsonl:1"), qwen3, DataConfig(chat_template_kwargs={"enable_thinking": False}))
    assert prompt.text == "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert qwen3.decode(prompt.ids) == prompt.text


def test_reasoning_contradicting_enable_thinking_names_the_turn(qwen3):
    with pytest.raises(DataError, match=r"^x.jsonl:1: field 'messages\[4\]': the chat template renders this assistant "
                                        r"turn so that it does not continue its own generation prompt"):
        sft(qwen3, {"messages": [SYSTEM, Q1, A1, Q2, A2]}, chat_template_kwargs={"enable_thinking": False})


def test_tools_reach_the_template_and_tool_turns_are_context(qwen3):
    call = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "add", "arguments": {"a": 2}}}]}
    result = {"role": "tool", "content": "4"}
    got = rows(qwen3, sft(qwen3, {"messages": [Q1, call, result, {"role": "assistant", "content": "4"}], "tools": [TOOL]}))
    assert got[0][0].startswith('<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the '
                                'user query.\n\nYou are provided with function signatures within <tools></tools> XML '
                                'tags:\n<tools>\n{"type": "function", "function": {"name": "add"')
    # the call turn is last in its own row (it opens with the think block it is sampled with)
    assert [masked for _, masked in got] == [
        '<think>\n\n</think>\n\n<tool_call>\n{"name": "add", "arguments": {"a": 2}}\n</tool_call><|im_end|>\n',
        "<think>\n\n</think>\n\n4<|im_end|>\n"]
    assert "<tool_response>\n4\n</tool_response>" in got[1][0]
    prompt = to_prompt(Record({"prompt": [Q1], "tools": [TOOL]}, "p.jsonl:1"), qwen3, DataConfig())
    assert prompt.text.startswith("<|im_start|>system\n# Tools") and prompt.text.endswith("<|im_start|>assistant\n")


def test_tools_key_and_bad_tools(qwen3):
    got = rows(qwen3, sft(qwen3, {"messages": [Q1, A1], "fns": [TOOL]}, tools_key="fns"))
    assert got[0][0].startswith("<|im_start|>system\n# Tools")
    with pytest.raises(DataError, match=r"^x.jsonl:1: field 'tools' must be a list of tool objects, got str$"):
        sft(qwen3, {"messages": [Q1, A1], "tools": "add"})


def test_pairs_train_the_final_turn_with_history_as_the_template_shows_it(qwen3):
    rec = Record({"chosen": [Q1, A1, Q2, A2], "rejected": [Q1, A1, Q2, {"role": "assistant", "content": "7"}]}, "x:1")
    (pair,), _ = tokenize_pairs([rec], qwen3, DataConfig(max_length=512))
    for side, answer in ((pair.chosen, "<think>\nadd again\n</think>\n\n6"), (pair.rejected, "<think>\n\n</think>\n\n7")):
        text = qwen3.decode(side.input_ids)
        assert text.startswith("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n")
        assert qwen3.decode([t for t, m in zip(side.input_ids, side.loss_mask, strict=True) if m]) == answer + "<|im_end|>\n"


def test_kto_trains_the_completion_only(tokenizer):
    recs = [Record({"prompt": [Q1, {"role": "assistant", "content": "4"}, Q2], "completion": "6", "label": True}, "x:1"),
            Record({"prompt": "hi", "completion": "hello", "label": False}, "x:2")]
    out, _ = tokenize_unpaired(recs, tokenizer, DataConfig(max_length=512, chat_template=True))
    s = out[0].sample
    assert tokenizer.decode([t for t, m in zip(s.input_ids, s.loss_mask, strict=True) if m]) == "6<|im_end|>\n"
    kl = out[0].kl_sample  # the completion under record 2's prompt
    assert tokenizer.decode(kl.input_ids) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n6<|im_end|>\n"


def test_a_failing_template_names_the_record(qwen3):
    with pytest.raises(DataError, match=r"^x.jsonl:1: the chat template cannot render this conversation \(TypeError: "):
        sft(qwen3, {"messages": [Q1, A1]}, chat_template_kwargs={"tools": 5})
