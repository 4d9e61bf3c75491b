"""Bad records get an error naming the file, line and field; truncation follows the stated rule."""

import json
import logging

import pytest

from alignkit.config.schema import DataConfig
from alignkit.data.readers import Record, read_records
from alignkit.data.tokenize import tokenize_pairs, tokenize_sft
from alignkit.errors import DataError

CFG = DataConfig(train_files=["x"], max_length=64)


def write(tmp_path, rows, name="d.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def sft_error(tmp_path, tokenizer, rows):
    with pytest.raises(DataError) as e:
        tokenize_sft(read_records(write(tmp_path, rows)), tokenizer, CFG)
    return str(e.value).replace(str(tmp_path) + "/", "")


def test_missing_field(tmp_path, tokenizer):
    msg = sft_error(tmp_path, tokenizer, [{"prompt": "a", "response": "b"}, {"prompt": "a"}])
    assert msg == "d.jsonl:2: missing field 'response' (fields present: prompt)"


def test_non_string_field(tmp_path, tokenizer):
    msg = sft_error(tmp_path, tokenizer, [{"prompt": "a", "response": 5}])
    assert msg == "d.jsonl:1: field 'response' must be a string, got int"


def test_empty_response(tmp_path, tokenizer):
    msg = sft_error(tmp_path, tokenizer, [{"prompt": "a", "response": "  "}])
    assert msg == "d.jsonl:1: field 'response' is empty"


def test_bad_messages(tmp_path, tokenizer):
    msg = sft_error(tmp_path, tokenizer, [{"messages": [{"role": "user", "content": 3}]}])
    assert msg == "d.jsonl:1: field 'messages[0]' must be an object with string 'role' and 'content'"


def test_neither_prompt_nor_messages(tmp_path, tokenizer):
    msg = sft_error(tmp_path, tokenizer, [{"text": "a"}])
    assert msg == "d.jsonl:1: missing field 'messages' (fields present: text)"


def test_truncation_keeps_the_start_and_counts(tokenizer):
    long = Record({"prompt": "1+1=", "response": "2" * 100}, "x:1")
    prompt_only = Record({"prompt": "9" * 100, "response": "3"}, "x:2")
    out, stats = tokenize_sft([long, prompt_only], tokenizer, DataConfig(train_files=["x"], max_length=20))
    assert len(out) == 1 and len(out[0].samples) == 1
    row = out[0].samples[0]
    assert len(row.input_ids) == 20 and row.input_ids[:4] == tokenizer("1+1=")["input_ids"]
    assert stats.truncated == 2 and stats.dropped_empty_after_truncation == 1 and stats.kept == 1


def test_identical_pair_is_skipped_with_a_warning(tokenizer, caplog):
    recs = [Record({"prompt": "p", "chosen": "a", "rejected": "a"}, "x.jsonl:4"),
            Record({"prompt": "p", "chosen": "a", "rejected": "b", "margin": 2}, "x.jsonl:5")]
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        pairs, stats = tokenize_pairs(recs, tokenizer, CFG)
    assert stats.skipped_identical_pairs == 1 and len(pairs) == 1 and pairs[0].margin == 2.0
    assert "x.jsonl:4: chosen equals rejected; pair skipped" in caplog.text


def test_pair_with_empty_side(tokenizer):
    with pytest.raises(DataError, match=r"^x.jsonl:2: field 'rejected' is empty$"):
        tokenize_pairs([Record({"prompt": "p", "chosen": "a", "rejected": ""}, "x.jsonl:2")], tokenizer, CFG)


def test_bad_margin(tokenizer):
    with pytest.raises(DataError, match=r"^x.jsonl:1: field 'margin' must be a number, got str$"):
        tokenize_pairs([Record({"prompt": "p", "chosen": "a", "rejected": "b", "margin": "x"}, "x.jsonl:1")], tokenizer, CFG)


def test_chat_pairs_as_whole_conversations(tokenizer):
    user = {"role": "user", "content": "2+2="}
    rec = Record({"chosen": [user, {"role": "assistant", "content": "4"}],
                  "rejected": [user, {"role": "assistant", "content": "5"}]}, "x:1")
    pairs, _ = tokenize_pairs([rec], tokenizer, CFG)
    c = pairs[0].chosen
    assert tokenizer.decode([t for t, m in zip(c.input_ids, c.loss_mask, strict=True) if m]) == "4<|im_end|>\n"
