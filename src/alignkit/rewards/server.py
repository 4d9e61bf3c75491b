"""The reward server app: `POST /score` and `GET /health` over any `RewardFn`, with batching.

Requests that arrive together are merged into one call of the reward (up to `max_batch` samples;
the first request waits at most `max_wait_s` for others), which is what makes a reward model on a
GPU worth serving. One call runs at a time, on a worker thread, so the event loop keeps accepting
requests meanwhile and the reward never runs concurrently with itself.

Errors: a bad request or a reward that fails its checks (NaN, wrong length) answers 422 with the
message in `detail`; any other exception in the reward answers 500 (traceback in the server log).
A merged call that fails is retried request by request, so one bad request fails alone and its
message counts samples from the start of that request.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import torch
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from alignkit.errors import AlignkitError
from alignkit.rewards.base import RewardFn, RewardInput, RewardOutput
from alignkit.rewards.validate import labels_of

log = logging.getLogger("alignkit")


class ScoreRequest(BaseModel):
    prompts: list[str]
    responses: list[str]
    labels: list[Any] | None = None


@dataclass(frozen=True)
class Pending:
    batch: RewardInput
    future: asyncio.Future


def _merge(items: list[Pending]) -> RewardInput:
    return RewardInput(
        [p for it in items for p in it.batch.prompts],
        [r for it in items for r in it.batch.responses],
        [lab for it in items for lab in it.batch.labels],
    )


def _slice(out: RewardOutput, start: int, stop: int) -> RewardOutput:
    return RewardOutput(out.scores[start:stop], {k: v[start:stop] for k, v in out.components.items()})


class Batcher:
    """Queues requests and scores them in merged calls; `run` is the loop, started with the app."""

    def __init__(self, fn: RewardFn, max_batch: int, max_wait_s: float) -> None:
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.pending: deque[Pending] = deque()
        self.queued = 0  # samples in `pending`
        self.arrived = asyncio.Event()
        self.full = asyncio.Event()

    async def score(self, batch: RewardInput) -> RewardOutput:
        item = Pending(batch, asyncio.get_running_loop().create_future())
        self.pending.append(item)
        self.queued += len(batch.prompts)
        self.arrived.set()
        if self.queued >= self.max_batch:
            self.full.set()
        return await item.future

    def _take(self) -> list[Pending]:
        """The oldest requests that fit in `max_batch` samples (at least one, however large)."""
        items, n = [], 0
        while self.pending and (not items or n + len(self.pending[0].batch.prompts) <= self.max_batch):
            items.append(self.pending.popleft())
            n += len(items[-1].batch.prompts)
        self.queued -= n
        if not self.pending:
            self.arrived.clear()
        if self.queued < self.max_batch:
            self.full.clear()
        return items

    async def _call(self, items: list[Pending]) -> None:
        try:
            out = await asyncio.to_thread(self.fn, _merge(items))
        except Exception as e:
            if len(items) > 1:
                for it in items:
                    await self._call([it])
                return
            if not items[0].future.done():  # done when the client went away
                items[0].future.set_exception(e)
            return
        start = 0
        for it in items:
            stop = start + len(it.batch.prompts)
            if not it.future.done():
                it.future.set_result(_slice(out, start, stop))
            start = stop

    async def run(self) -> None:
        while True:
            await self.arrived.wait()
            # Score what has arrived once max_batch samples are queued or max_wait_s has passed.
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.full.wait(), self.max_wait_s)
            await self._call(self._take())


def _as_json(out: RewardOutput) -> dict[str, Any]:
    return {"scores": out.scores.tolist(), "components": {k: v.tolist() for k, v in out.components.items()}}


def build_app(fn: RewardFn, max_batch: int, max_wait_s: float, description: str) -> FastAPI:
    """The FastAPI app serving `fn`; `description` (what is served) is shown by /health."""
    batcher: Batcher | None = None

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        nonlocal batcher
        batcher = Batcher(fn, max_batch, max_wait_s)
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title="alignkit reward server", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "reward": description}

    @app.post("/score")
    async def score(req: ScoreRequest) -> dict[str, Any]:
        batch = RewardInput(req.prompts, req.responses, req.labels or [])
        try:
            batch = RewardInput(batch.prompts, batch.responses, labels_of(batch))
            if not batch.prompts:
                return _as_json(RewardOutput(torch.zeros(0)))
            return _as_json(await batcher.score(batch))
        except AlignkitError as e:
            raise HTTPException(422, str(e)) from None
        except Exception as e:
            log.exception("reward %s failed", description)
            raise HTTPException(500, f"{type(e).__name__}: {e}") from None

    return app
