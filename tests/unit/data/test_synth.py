import json
import re
from collections import Counter

import pytest

from alignkit.data.synth import KINDS, TASKS, is_correct, make_records, write_jsonl
from alignkit.errors import AlignkitError

ARITHMETIC = re.compile(r"(\d+)\+(\d+)=")
SORT = re.compile(r"sort: ([0-9](?: [0-9]){3,5}) =")
REVERSE = re.compile(r"reverse: ([a-h]{3,6}) =")


def solve(task, prompt):
    """An independent solver, to check the generator's answers."""
    if task == "arithmetic":
        a, b = ARITHMETIC.fullmatch(prompt).groups()
        return str(int(a) + int(b))
    if task == "sort":
        return " ".join(sorted(SORT.fullmatch(prompt).group(1).split()))
    return REVERSE.fullmatch(prompt).group(1)[::-1]


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_records_other_seed_other_records(task, kind):
    assert make_records(task, kind, 20, seed=1) == make_records(task, kind, 20, seed=1)
    assert make_records(task, kind, 20, seed=1) != make_records(task, kind, 20, seed=2)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_sft_answers_are_correct_and_prompts_unique(task):
    rows = make_records(task, "sft", 300, seed=0)
    assert all(set(row) == {"prompt", "response", "answer"} for row in rows)
    assert all(row["response"] == row["answer"] == solve(task, row["prompt"]) for row in rows)
    assert len({row["prompt"] for row in rows}) == 300


def test_arithmetic_operands_stay_within_two_digits():
    operands = [
        int(x)
        for row in make_records("arithmetic", "prompt", 500)
        for x in ARITHMETIC.fullmatch(row["prompt"]).groups()
    ]
    assert min(operands) >= 0 and max(operands) <= 99
    assert max(operands) >= 90  # the whole range is used


def test_arithmetic_repeats_prompts_only_once_the_space_is_used_up():
    rows = make_records("arithmetic", "prompt", 10_050, seed=0)
    assert len({row["prompt"] for row in rows}) > 9_000


@pytest.mark.parametrize("task", sorted(TASKS))
def test_prompt_kind_labels_are_answers(task):
    rows = make_records(task, "prompt", 50, seed=3)
    assert all(set(row) == {"prompt", "label"} for row in rows)
    assert all(row["label"] == solve(task, row["prompt"]) for row in rows)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_pairs_reject_a_wrong_answer(task):
    for row in make_records(task, "pair", 300, seed=5):
        assert row["chosen"] == solve(task, row["prompt"])
        assert row["rejected"] != row["chosen"]
        assert not is_correct(task, row["chosen"], row["rejected"])


def test_sort_rejected_is_a_wrong_permutation():
    for row in make_records("sort", "pair", 200, seed=0):
        assert Counter(row["rejected"].split()) == Counter(row["chosen"].split())


def test_reverse_rejected_uses_the_same_letters():
    for row in make_records("reverse", "pair", 200, seed=0):
        assert sorted(row["rejected"]) == sorted(row["chosen"])


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("n", [100, 101])
def test_unpaired_labels_are_balanced_and_true(task, n):
    rows = make_records(task, "unpaired", n, seed=9)
    assert sum(row["label"] for row in rows) == (n + 1) // 2
    for row in rows:
        assert is_correct(task, solve(task, row["prompt"]), row["completion"]) is row["label"]


def test_unpaired_labels_are_shuffled():
    labels = [row["label"] for row in make_records("sort", "unpaired", 40, seed=0)]
    assert labels != sorted(labels, reverse=True)


def test_is_correct_normalises_whitespace_only():
    assert is_correct("sort", "1 2 5 9", "  1  2 5\t9\n")
    assert not is_correct("sort", "1 2 5 9", "1 2 59")
    assert is_correct("arithmetic", "42", " 42 ")
    assert not is_correct("arithmetic", "42", "042")


def test_write_jsonl_round_trips_and_creates_folders(tmp_path):
    rows = make_records("reverse", "unpaired", 5)
    path = tmp_path / "nested" / "dir" / "rows.jsonl"
    write_jsonl(rows, path)
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows


def test_unknown_task():
    with pytest.raises(AlignkitError) as info:
        make_records("chess", "sft", 1)
    assert str(info.value) == "unknown task 'chess'; valid tasks: arithmetic, sort, reverse"
    with pytest.raises(AlignkitError, match="unknown task 'chess'"):
        is_correct("chess", "a", "a")


def test_unknown_kind():
    with pytest.raises(AlignkitError) as info:
        make_records("sort", "dpo", 1)
    assert str(info.value) == "unknown kind 'dpo'; valid kinds: sft, prompt, pair, unpaired"
