"""Records are checked before any model loads (chat roles, empty assistant turns, finite margins, labels
that rules need, nesting), naming file, line and field; very long texts are cut by characters first."""

import json

import pytest

from alignkit.config.schema import DataConfig
from alignkit.data.readers import MAX_DEPTH, read_records
from alignkit.data.tokenize import tokenize_pairs, tokenize_sft
from alignkit.data.validate import CUT_MARGIN, char_limit, check_labels, cut_to_max_length
from alignkit.errors import DataError

CFG = DataConfig(train_files=["x"], max_length=48)


def write(tmp_path, rows, name="d.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def error(tmp_path, tokenize, tokenizer, rows) -> str:
    with pytest.raises(DataError) as e:
        tokenize(read_records(write(tmp_path, rows)), tokenizer, CFG)
    return str(e.value).replace(str(tmp_path) + "/", "")


def chat(*turns):
    return {"messages": [{"role": r, "content": c} for r, c in turns]}


@pytest.mark.parametrize(("turns", "message"), [
    ([("user", "hi"), ("robot", "beep")], "d.jsonl:2: field 'messages[1]': role 'robot' is not one of system, user, "
                                          "assistant, tool"),
    ([("user", "hi"), ("assistant", " ")], "d.jsonl:2: field 'messages[1]': the assistant message is empty"),
    ([("user", "a"), ("user", "b"), ("assistant", "c")],
     "d.jsonl:2: field 'messages[1]': two 'user' messages in a row; user and assistant turns must alternate"),
    ([("user", "a"), ("system", "b"), ("assistant", "c")],
     "d.jsonl:2: field 'messages[1]': a system message can only come first"),
    ([("user", "a"), ("tool", "b")], "d.jsonl:2: field 'messages[1]': a tool message must follow an assistant message"),
])  # fmt: skip
def test_chat_roles(tmp_path, tokenizer, turns, message):
    ok = chat(("system", "be brief"), ("user", "hi"), ("assistant", "hello"), ("tool", "{}"), ("assistant", "ok"))
    assert error(tmp_path, tokenize_sft, tokenizer, [ok, chat(*turns)]) == message


@pytest.mark.parametrize("margin", ["NaN", "Infinity", "-Infinity"])
def test_margins_must_be_finite(tmp_path, tokenizer, margin):
    p = tmp_path / "d.jsonl"
    p.write_text('{"prompt": "a", "chosen": "b", "rejected": "c", "margin": ' + margin + "}\n")
    with pytest.raises(DataError, match=r"d.jsonl:1: field 'margin' must be a finite number, got"):
        tokenize_pairs(read_records(p), tokenizer, CFG)


def test_labels_that_rules_need(tmp_path):
    records = read_records(write(tmp_path, [{"prompt": "1+1=", "label": "2"}, {"prompt": "2+2="}]))
    check_labels(records, "label", [])  # format and boxed rules need no label
    with pytest.raises(DataError) as e:
        check_labels(records, "label", ["math"])
    assert str(e.value).replace(str(tmp_path) + "/", "") == (
        "d.jsonl:2: missing field 'label': --reward.rules math compare each response with the prompt's reference "
        "answer (--data.label_key names the field)")


def test_deep_nesting_is_a_data_error(tmp_path):
    p = tmp_path / "deep.jsonl"
    p.write_text('{"prompt": "a", "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(DataError, match=r"deep.jsonl:1: JSON nested too deeply to read"):
        read_records(p)
    p.write_text('{"prompt": "a", "label": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}\n")
    with pytest.raises(DataError, match=rf"deep.jsonl:1: JSON nested more than {MAX_DEPTH} levels deep"):
        read_records(p)
    q = tmp_path / "deep.json"
    q.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"deep.json: JSON nested too deeply to read"):
        read_records(q)


class Recording:
    """A tokenizer that records the longest text it was asked to tokenise."""

    def __init__(self, tokenizer):
        self.inner, self.longest = tokenizer, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, text, **kwargs):
        self.longest = max(self.longest, len(text))
        return self.inner(text, **kwargs)


def test_long_texts_are_cut_by_characters_without_changing_samples(tmp_path, tokenizer):
    limit = char_limit(tokenizer, CFG.max_length)
    widest = max(len(t.encode()) for t in tokenizer.get_vocab())
    assert limit == (CFG.max_length + CUT_MARGIN) * widest
    rows = [{"prompt": "12+30=", "response": "42 " * 30_000},  # 90 kB
            {"prompt": "7 " * 20_000, "response": "7"},  # the prompt alone fills max_length: dropped either way
            {"prompt": "1+1=", "response": "2"}]
    records = read_records(write(tmp_path, rows))
    recording = Recording(tokenizer)
    cut, cut_stats = tokenize_sft(cut_to_max_length(records, tokenizer, CFG), recording, CFG)
    assert recording.longest <= limit
    whole, whole_stats = tokenize_sft(records, tokenizer, CFG)  # the slow way: every character tokenised
    assert cut == whole and cut_stats.as_dict() == whole_stats.as_dict() == {
        "records": 3, "kept": 2, "truncated": 2, "dropped_empty_after_truncation": 1, "skipped_identical_pairs": 0,
        "multi_row_records": 0}
