"""Metrics that carry their reduction (alignkit.algos.metric): partials combine by one rule, in any order."""

import itertools

import pytest
import torch

from alignkit.algos.metric import Metric, maximum, mean, merge, merge_all, minimum, prefixed, total, values


def test_each_reduction_by_hand():
    # a mean of 2.0 over 3 tokens and of 5.0 over 1 token is (6 + 5) / 4, not (2 + 5) / 2
    assert merge(mean(2.0, 3), mean(5.0, 1)).value == pytest.approx(11 / 4)
    assert merge(total(2.0), total(5.0)).value == 7.0
    assert merge(maximum(1.5, 4), maximum(1.25, 9)).value == 1.5
    assert merge(minimum(0.5, 4), minimum(0.75, 9)).value == 0.5


def test_a_part_that_saw_nothing_never_wins():
    # a worker with only padding rows reports a max of 0 over 0 tokens: the other's 0.25 stays the max
    assert merge(maximum(0.0, 0), maximum(0.25, 3)).value == 0.25
    assert merge(minimum(0.25, 3), minimum(0.0, 0)).value == 0.25
    assert mean(0.0, 0).value == 0.0 and maximum(float("-inf"), 0).value == 0.0


def test_order_of_combination_does_not_matter():
    parts = [{"m": mean(1.0, 2), "x": maximum(3.0, 1)}, {"m": mean(4.0, 1)}, {"m": mean(2.5, 4), "x": maximum(7.0, 2)}]
    for order in itertools.permutations(parts):
        assert values(merge_all(order)) == {"m": pytest.approx((2 + 4 + 10) / 7), "x": 7.0}


def test_tensors_become_floats_once():
    m = Metric("mean", torch.tensor(6.0, requires_grad=True) * 1, torch.tensor(3))
    f = m.item()
    assert isinstance(f.total, float) and isinstance(f.weight, float) and f.value == 2.0


def test_kinds_do_not_mix_and_names_take_a_prefix():
    with pytest.raises(ValueError, match="cannot combine a mean metric with a max one"):
        merge(mean(1.0, 1), maximum(1.0))
    assert list(prefixed("critic/", {"loss": total(1.0)})) == ["critic/loss"]
