"""Token-budget micro-batches (`--train.micro_batch_tokens`): the grouping rule worked by hand, and how
the workers of a data-parallel run share the groups (a preference pair stays whole)."""

from alignkit.data.packing import first_fit_decreasing
from alignkit.trainers.supervised import data_parallel
from alignkit.trainers.supervised.data_parallel import micro_batches, shares


def test_first_fit_decreasing_by_hand():
    # longest first: 9 opens bin 0 (1 left), 8 bin 1 (2 left), 5 bin 2 (5 left), 4 joins bin 2 (1 left),
    # 3 fits nowhere: bin 3 (7 left), 2 joins bin 1 (0 left)
    assert first_fit_decreasing([5, 3, 8, 2, 4, 9], 10) == [[5], [2, 3], [0, 4], [1]]


def test_a_sample_longer_than_the_budget_goes_alone():
    # 12 > 10 opens a bin with no room left; 3 and 1 share the next
    assert first_fit_decreasing([12, 1, 3], 10) == [[0], [2, 1]]


def test_equal_lengths_keep_their_order():
    assert first_fit_decreasing([2, 2, 2], 4) == [[0, 1], [2]]


def test_the_token_budget_wins_over_the_sample_count():
    words = ["aaaaa", "bbb", "cccccccc", "dd", "eeee", "fffffffff"]
    assert micro_batches(words, 2) == [["aaaaa", "bbb"], ["cccccccc", "dd"], ["eeee", "fffffffff"]]
    assert micro_batches(words, 2, tokens=10, length=len) == [
        ["fffffffff"], ["cccccccc", "dd"], ["aaaaa", "eeee"], ["bbb"]]


def test_workers_share_the_same_groups_and_pairs_stay_whole(monkeypatch):
    pairs = [("p0", 6), ("p1", 3), ("p2", 5), ("p3", 2)]  # (name, tokens of both sides)
    groups = [[("p0", 6), ("p3", 2)], [("p2", 5), ("p1", 3)]]
    assert micro_batches(pairs, 1, tokens=8, length=lambda p: p[1]) == groups
    got = {}
    for rank in (0, 1):
        monkeypatch.setattr(data_parallel, "rank", lambda rank=rank: rank)
        monkeypatch.setattr(data_parallel, "world_size", lambda: 2)
        got[rank] = [(list(mine), real) for mine, real in shares(pairs, 1, 8, lambda p: p[1])]
    assert got[0] == [([("p0", 6)], True), ([("p2", 5)], True)]
    assert got[1] == [([("p3", 2)], True), ([("p1", 3)], True)]
    # budget 6: groups [p0], [p2], [p1, p3]; of a group of one pair the second worker runs a stand-in (the
    # group's first pair, not counted), so both make as many calls
    monkeypatch.setattr(data_parallel, "rank", lambda: 1)
    assert [(list(m), real) for m, real in shares(pairs, 1, 6, lambda p: p[1])] == [
        ([("p0", 6)], False), ([("p2", 5)], False), ([("p3", 2)], True)]
