"""The teacher's vocabulary rule: same token -> id map as the student's tokenizer; logits compared over
the ids both models have (padding rows of one model left out)."""

from types import SimpleNamespace

import pytest

from alignkit.errors import ModelError
from alignkit.models.teacher import check_same_tokenizer, shared_width


def tok(vocab):
    return SimpleNamespace(get_vocab=lambda: dict(vocab))


def test_same_tokenizer_passes():
    check_same_tokenizer("s", tok({"a": 0, "b": 1}), "t", tok({"b": 1, "a": 0}))


def test_a_token_with_another_id_is_named():
    with pytest.raises(ModelError) as e:
        check_same_tokenizer("runs/student", tok({"a": 0, "b": 1, "c": 2}), "runs/teacher", tok({"a": 0, "c": 1, "b": 2}))
    assert str(e.value) == ("--teacher.path runs/teacher and --model.path runs/student do not share a tokenizer "
                            "(token 'b' is id 1 in the student's and id 2 in the teacher's); distillation compares "
                            "distributions over token ids")


def test_a_missing_token_is_named():
    with pytest.raises(ModelError, match=r"token 'b' is id 1 in the student's and missing in the teacher's"):
        check_same_tokenizer("s", tok({"a": 0, "b": 1}), "t", tok({"a": 0, "x": 1}))


def test_padded_embedding_rows_are_left_out():
    assert shared_width("s", 512, "t", 640, 500) == 512  # the teacher's 128 extra rows: no token has them
    assert shared_width("s", 520, "t", 512, 500) == 512
    with pytest.raises(ModelError, match=r"^t has 499 output embedding rows, fewer than the tokenizer's 500 tokens$"):
        shared_width("s", 512, "t", 499, 500)
