"""The reward server's batcher: concurrent requests merged up to max_batch, results split back."""

from __future__ import annotations

import asyncio

import pytest
import torch

from alignkit.rewards.base import RewardInput, RewardOutput
from alignkit.rewards.server import Batcher


class Recorder:
    """Scores each sample by the number in its response; remembers the size of every call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, batch: RewardInput) -> RewardOutput:
        self.calls.append(len(batch.prompts))
        if "bad" in batch.responses:
            raise ValueError("bad response")
        scores = torch.tensor([float(r) for r in batch.responses])
        return RewardOutput(scores, {"double": 2 * scores})


def request(*values: int) -> RewardInput:
    return RewardInput([f"p{v}" for v in values], [str(v) for v in values], [None] * len(values))


async def run_all(batcher: Batcher, *batches: RewardInput):
    task = asyncio.create_task(batcher.run())
    try:
        return await asyncio.wait_for(
            asyncio.gather(*(batcher.score(b) for b in batches), return_exceptions=True), 10
        )
    finally:
        task.cancel()


def test_merges_up_to_max_batch_and_splits_in_order():
    fn = Recorder()

    async def main():
        return await run_all(
            Batcher(fn, max_batch=4, max_wait_s=0.05), request(1, 2), request(3, 4), request(5, 6)
        )

    outs = asyncio.run(main())
    assert fn.calls == [4, 2]
    assert [o.scores.tolist() for o in outs] == [[1, 2], [3, 4], [5, 6]]
    assert outs[1].components["double"].tolist() == [6, 8]


def test_large_request_is_scored_alone():
    fn = Recorder()

    async def main():
        return await run_all(Batcher(fn, max_batch=2, max_wait_s=0.01), request(1, 2, 3), request(4))

    outs = asyncio.run(main())
    assert fn.calls == [3, 1]
    assert [o.scores.tolist() for o in outs] == [[1, 2, 3], [4]]


def test_a_bad_request_fails_alone():
    fn = Recorder()
    bad = RewardInput(["p"], ["bad"], [None])

    async def main():
        return await run_all(Batcher(fn, max_batch=8, max_wait_s=0.05), request(1), bad, request(2))

    good1, err, good2 = asyncio.run(main())
    assert fn.calls == [3, 1, 1, 1]  # the merged call, then one per request
    assert good1.scores.tolist() == [1] and good2.scores.tolist() == [2]
    with pytest.raises(ValueError, match="bad response"):
        raise err
