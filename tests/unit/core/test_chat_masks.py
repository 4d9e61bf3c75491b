"""Loss masks from chat templates: every assistant turn, nothing else."""

import pytest

from alignkit.data.chat import Template, chat_rows, tokenize_spans
from alignkit.data.samples import TokenizedSample
from alignkit.data.tokenize import encode
from alignkit.errors import DataError, ModelError


def encode_messages(tok, msgs, source):
    """A chat record's one row (ChatML renders every prefix as a prefix: one row, every turn marked)."""
    (text, spans), = chat_rows(Template(tok, source), msgs, [i for i, m in enumerate(msgs) if m["role"] == "assistant"])
    ids, mask = tokenize_spans(tok, text, spans)
    return TokenizedSample(ids, mask, source)


def masked_text(tok, sample):
    return tok.decode([t for t, m in zip(sample.input_ids, sample.loss_mask, strict=True) if m])


def test_single_turn_mask_covers_the_answer_and_end_of_turn(tokenizer):
    s = encode_messages(tokenizer, [{"role": "user", "content": "2+3="}, {"role": "assistant", "content": "5"}], "x:1")
    assert masked_text(tokenizer, s) == "5<|im_end|>\n"
    assert tokenizer.decode(s.input_ids) == "<|im_start|>user\n2+3=<|im_end|>\n<|im_start|>assistant\n5<|im_end|>\n"


def test_multi_turn_mask_covers_every_assistant_turn(tokenizer):
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "sum 2 2"},
        {"role": "assistant", "content": "4"},
    ]
    s = encode_messages(tokenizer, msgs, "x:1")
    assert masked_text(tokenizer, s) == "hello<|im_end|>\n4<|im_end|>\n"


def test_plain_text_mask_is_response_plus_eos(tokenizer):
    s = encode(tokenizer, "12+3=", "15", use_chat=False, source="x:1")
    assert masked_text(tokenizer, s) == "15<|eos|>"
    assert tokenizer.decode(s.input_ids[: s.loss_mask.index(1)]) == "12+3="


def test_conversation_without_assistant_turn(tokenizer):
    with pytest.raises(DataError, match=r"^x.jsonl:3: the conversation has no assistant turn to train on$"):
        chat_rows(Template(tokenizer, "x.jsonl:3"), [{"role": "user", "content": "hi"}], [])


def test_template_missing(tokenizer):
    class NoTemplate:
        chat_template = None

    with pytest.raises(ModelError, match=r"^x.jsonl:1: chat data needs a chat template, but the tokenizer has none"):
        Template(NoTemplate(), "x.jsonl:1").render([{"role": "user", "content": "hi"}], True)
