"""Each worker's share of the loop's micro-batches: every world-th item, and a stand-in (the micro-batch's
first item, not counted) where a worker has none, so that every worker makes as many calls."""

import torch

from alignkit.algos.losses.sft import sft_loss
from alignkit.trainers.supervised import data_parallel
from alignkit.trainers.supervised.data_parallel import STAND_IN, shares


def worker_shares(items, micro, rank, world, monkeypatch):
    monkeypatch.setattr(data_parallel, "rank", lambda: rank)
    monkeypatch.setattr(data_parallel, "world_size", lambda: world)
    return [(list(mine), real) for mine, real in shares(items, micro)]


def test_every_item_once_in_as_many_calls(monkeypatch):
    items = list(range(10))
    parts = [worker_shares(items, 4, r, 3, monkeypatch) for r in range(3)]
    # micro-batches [0..3], [4..7], [8, 9]: worker 2 has nothing of the last one
    assert parts[0] == [([0, 3], True), ([4, 7], True), ([8], True)]
    assert parts[1] == [([1], True), ([5], True), ([9], True)]
    assert parts[2] == [([2], True), ([6], True), ([8], False)]
    real = sorted(i for p in parts for mine, ok in p if ok for i in mine)
    assert real == items


def test_one_worker_takes_whole_micro_batches(monkeypatch):
    assert worker_shares(list(range(5)), 2, 0, 1, monkeypatch) == [([0, 1], True), ([2, 3], True), ([4], True)]


def test_a_stand_in_adds_no_loss_and_no_gradient():
    logprobs = torch.full((1, 5), -2.0, requires_grad=True)
    loss, metrics = sft_loss(logprobs, torch.ones(1, 5), STAND_IN)
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(metrics["nll"]) == 0.0
    assert torch.equal(logprobs.grad, torch.zeros(1, 5))
