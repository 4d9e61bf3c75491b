"""The reward server app: `POST /score` and `GET /health` over any `RewardFn`, with batching.

Requests that arrive together are merged into one call of the reward (up to `max_batch` samples;
the first request waits at most `max_wait_s` for others), which is what makes a reward model on a
GPU worth serving. One call runs at a time, on a daemon thread, so the event loop keeps accepting
requests meanwhile and the reward never runs concurrently with itself; a call stuck for good leaves
every later request to its deadline and /health reporting it, and does not hold up a shutdown.

Errors: a bad request or a reward that fails its checks (NaN, wrong length) answers 422 with the
message in `detail`; any other exception in the reward answers 500 (traceback in the server log); no
scores within the deadline answers 504. Limits: a body size (413), and optionally a bearer token (401).
A merged call that fails is retried request by request, so one bad request fails alone and its
message counts samples from the start of that request.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections import deque
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import torch
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
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
        self.busy_since: float | None = None  # time.monotonic() when the running call began

    async def score(self, batch: RewardInput) -> RewardOutput:
        item = Pending(batch, asyncio.get_running_loop().create_future())
        self.pending.append(item)
        self.queued += len(batch.prompts)
        self.arrived.set()
        if self.queued >= self.max_batch:
            self.full.set()
        return await item.future

    def _take(self) -> list[Pending]:
        """The oldest requests that fit in `max_batch` samples (at least one, however large); requests that
        gave up meanwhile (their deadline passed, or the client went away) are dropped."""
        items, n = [], 0
        while self.pending and (not items or n + len(self.pending[0].batch.prompts) <= self.max_batch):
            it = self.pending.popleft()
            self.queued -= len(it.batch.prompts)
            if not it.future.done():
                items.append(it)
                n += len(it.batch.prompts)
        if not self.pending:
            self.arrived.clear()
        if self.queued < self.max_batch:
            self.full.clear()
        return items

    def busy_for(self) -> float:
        """Seconds the running call of the reward has taken so far (0 when idle)."""
        return 0.0 if self.busy_since is None else time.monotonic() - self.busy_since

    async def _call(self, items: list[Pending]) -> None:
        self.busy_since = time.monotonic()
        try:
            out = await _on_daemon_thread(self.fn, _merge(items))
        except Exception as e:
            self.busy_since = None
            if len(items) > 1:
                for it in items:
                    await self._call([it])
                return
            if not items[0].future.done():  # done when the client went away
                items[0].future.set_exception(e)
            return
        self.busy_since = None
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
            items = self._take()
            if items:
                await self._call(items)


async def _on_daemon_thread(fn: RewardFn, batch: RewardInput) -> RewardOutput:
    """`fn(batch)` on a daemon thread: a reward stuck for good never keeps the server from shutting down
    (asyncio.to_thread's pool threads are joined at exit). `sys.exit` inside it is an error like any."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result)

    def target() -> None:
        try:
            result, error = fn(batch), None
        except Exception as e:
            result, error = None, e
        except BaseException as e:  # SystemExit, KeyboardInterrupt: would end the event loop if re-raised
            result, error = None, RuntimeError(f"the reward raised {type(e).__name__}: {e}")
        with suppress(RuntimeError):  # the loop closed: the server is shutting down
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=target, daemon=True, name="reward").start()
    return await future


class Guard:
    """ASGI middleware in front of /score: the bearer token (when one is set) and the body size limit,
    checked from the headers before the body is read (a request without Content-Length is refused)."""

    def __init__(self, app: Any, token: str, max_body_bytes: int) -> None:
        self.app, self.token, self.max_body_bytes = app, token, max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/score":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            refusal = self.refusal(headers)
            if refusal is not None:
                await JSONResponse({"detail": refusal[1]}, status_code=refusal[0])(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, headers: dict[str, str]) -> tuple[int, str] | None:
        if self.token and not hmac.compare_digest(headers.get("authorization", ""), f"Bearer {self.token}"):
            return 401, "missing or wrong bearer token (Authorization: Bearer ...)"
        length = headers.get("content-length", "")
        if not length.isdigit():
            return 411, "a request needs a Content-Length header"
        if int(length) > self.max_body_bytes:
            return 413, f"the request has {int(length)} bytes; the server takes at most {self.max_body_bytes} (--max_body_mb)"
        return None


def _as_json(out: RewardOutput) -> dict[str, Any]:
    return {"scores": out.scores.tolist(), "components": {k: v.tolist() for k, v in out.components.items()}}


def build_app(fn: RewardFn, max_batch: int, max_wait_s: float, description: str, timeout_s: float = 60.0,
              token: str = "", max_body_bytes: int = 64 << 20) -> FastAPI:
    """The FastAPI app serving `fn`; `description` (what is served) is shown by /health. A /score request
    gets its scores within `timeout_s` or a 504; /health answers 503 "stuck" while one call of the reward
    has run longer than that; with a `token`, /score needs `Authorization: Bearer <token>`."""
    batcher: Batcher | None = None

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        nonlocal batcher
        batcher = Batcher(fn, max_batch, max_wait_s)
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()
        log.info("reward server stopped%s", " (a call of the reward was still running)" if batcher.busy_for() else "")

    app = FastAPI(title="alignkit reward server", lifespan=lifespan)
    app.add_middleware(Guard, token=token, max_body_bytes=max_body_bytes)

    @app.get("/health")
    async def health() -> Any:
        busy = batcher.busy_for()
        if busy > timeout_s:
            detail = f"one call of the reward has run for {busy:.0f} s, longer than the {timeout_s:g} s deadline"
            return JSONResponse({"status": "stuck", "reward": description, "detail": detail}, status_code=503)
        return {"status": "ok", "reward": description}

    @app.post("/score")
    async def score(req: ScoreRequest) -> dict[str, Any]:
        batch = RewardInput(req.prompts, req.responses, req.labels or [])
        try:
            batch = RewardInput(batch.prompts, batch.responses, labels_of(batch))
            if not batch.prompts:
                return _as_json(RewardOutput(torch.zeros(0)))
            return _as_json(await asyncio.wait_for(batcher.score(batch), timeout_s))
        except asyncio.TimeoutError:
            stuck = f"; the reward has been in one call for {batcher.busy_for():.0f} s" if batcher.busy_for() else ""
            raise HTTPException(504, f"no scores within {timeout_s:g} s (--timeout_s){stuck}") from None
        except AlignkitError as e:
            raise HTTPException(422, str(e)) from None
        except Exception as e:
            log.exception("reward %s failed", description)
            raise HTTPException(500, f"{type(e).__name__}: {e}") from None

    return app
