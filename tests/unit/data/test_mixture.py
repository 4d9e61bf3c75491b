import json
import logging
from collections import Counter

import pytest

from alignkit.data.mixture import load_mixture, train_eval_split
from alignkit.data.readers import Record
from alignkit.errors import DataError


def write_file(path, n):
    path.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(n)))
    return str(path)


def origin(record):
    return record.source.rsplit(":", 1)[0]


def test_unweighted_concatenates_and_shuffles(tmp_path):
    a, b = write_file(tmp_path / "a.jsonl", 30), write_file(tmp_path / "b.jsonl", 20)
    mixed = load_mixture([a, b], seed=1)
    assert Counter(map(origin, mixed)) == {a: 30, b: 20}
    assert len({r.source for r in mixed}) == 50
    assert [r.source for r in mixed] != [f"{a}:{i}" for i in range(1, 31)] + [
        f"{b}:{i}" for i in range(1, 21)
    ]


def test_unweighted_max_samples_truncates_after_shuffle(tmp_path):
    a, b = write_file(tmp_path / "a.jsonl", 30), write_file(tmp_path / "b.jsonl", 20)
    assert load_mixture([a, b], max_samples=10, seed=3) == load_mixture([a, b], seed=3)[:10]


def test_weighted_proportions_are_exact(tmp_path):
    a, b = write_file(tmp_path / "a.jsonl", 500), write_file(tmp_path / "b.jsonl", 200)
    mixed = load_mixture([a, b], weights=[3, 1], max_samples=400)
    assert Counter(map(origin, mixed)) == {a: 300, b: 100}
    assert len({r.source for r in mixed}) == 400  # drawn without replacement


def test_weighted_counts_sum_to_max_samples(tmp_path):
    files = [write_file(tmp_path / f"{name}.jsonl", 50) for name in "abc"]
    counts = Counter(map(origin, load_mixture(files, weights=[1, 1, 1], max_samples=100)))
    assert sum(counts.values()) == 100
    assert sorted(counts.values()) == [33, 33, 34]


def test_weighted_default_total_repeats_nothing(tmp_path):
    a, b = write_file(tmp_path / "a.jsonl", 300), write_file(tmp_path / "b.jsonl", 50)
    mixed = load_mixture([a, b], weights=[0.5, 0.5])
    assert Counter(map(origin, mixed)) == {a: 50, b: 50}
    assert len({r.source for r in mixed}) == 100


def test_small_file_is_cycled_with_a_warning(tmp_path, caplog):
    a, b = write_file(tmp_path / "a.jsonl", 100), write_file(tmp_path / "b.jsonl", 3)
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        mixed = load_mixture([a, b], weights=[1, 1], max_samples=20)
    small = Counter(r.source for r in mixed if origin(r) == b)
    assert sorted(small.values()) == [3, 3, 4]
    assert f"{b}: has 3 records but its weight asks for 10; repeating records" in caplog.text


def test_same_seed_same_mixture_other_seed_other_order(tmp_path):
    a, b = write_file(tmp_path / "a.jsonl", 60), write_file(tmp_path / "b.jsonl", 60)
    first = load_mixture([a, b], weights=[2, 1], max_samples=30, seed=7)
    assert first == load_mixture([a, b], weights=[2, 1], max_samples=30, seed=7)
    assert first != load_mixture([a, b], weights=[2, 1], max_samples=30, seed=8)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0], "1 weights for 2 files; give one weight per file"),
        ([1.0, 0.0], "{b}: weight 0.0 must be a positive number"),
        ([1.0, -2], "{b}: weight -2 must be a positive number"),
        ([float("nan"), 1.0], "{a}: weight nan must be a positive number"),
    ],
)
def test_bad_weights(tmp_path, weights, message):
    a, b = write_file(tmp_path / "a.jsonl", 5), write_file(tmp_path / "b.jsonl", 5)
    with pytest.raises(DataError) as info:
        load_mixture([a, b], weights=weights)
    assert str(info.value) == message.format(a=a, b=b)


def test_no_files():
    with pytest.raises(DataError) as info:
        load_mixture([])
    assert str(info.value) == "no data files given: a mixture needs at least one file"


def test_empty_file(tmp_path):
    a, empty = write_file(tmp_path / "a.jsonl", 5), write_file(tmp_path / "empty.jsonl", 0)
    with pytest.raises(DataError) as info:
        load_mixture([a, empty])
    assert str(info.value) == f"{empty}: no records; a mixture cannot draw from an empty file"


def test_non_positive_max_samples(tmp_path):
    with pytest.raises(DataError) as info:
        load_mixture([write_file(tmp_path / "a.jsonl", 5)], max_samples=0)
    assert str(info.value) == "max_samples must be a positive number of records, got 0"


def records(n):
    return [Record({"i": i}, f"x.jsonl:{i + 1}") for i in range(n)]


@pytest.mark.parametrize(
    ("n", "fraction", "eval_size"),
    [
        (100, 0.1, 10),
        (10, 0.25, 2),
        (10, 0.01, 1),
        (2, 0.1, 1),
        (1, 0.5, 0),
        (10, 0.99, 9),
        (10, 0.0, 0),
        (0, 0.5, 0),
    ],
)
def test_split_sizes(n, fraction, eval_size):
    train, evaluation = train_eval_split(records(n), fraction, seed=0)
    assert len(evaluation) == eval_size
    assert len(train) == n - eval_size
    assert sorted(r.source for r in train + evaluation) == sorted(r.source for r in records(n))


def test_split_is_deterministic_and_keeps_order():
    first = train_eval_split(records(50), 0.2, seed=4)
    assert first == train_eval_split(records(50), 0.2, seed=4)
    assert first != train_eval_split(records(50), 0.2, seed=5)
    for part in first:
        assert [r.data["i"] for r in part] == sorted(r.data["i"] for r in part)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_fraction_out_of_range(fraction):
    with pytest.raises(DataError) as info:
        train_eval_split(records(10), fraction, seed=0)
    assert str(info.value) == f"eval_fraction must be in [0, 1), got {fraction}"
