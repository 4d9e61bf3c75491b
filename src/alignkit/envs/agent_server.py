"""The agent endpoint: the rollout engine served to agent code as an OpenAI-compatible API on 127.0.0.1.

Each agent run gets a base URL of its own, `http://127.0.0.1:PORT/runs/<run>/v1`, so the requests of
one run are told apart without any header; an `openai.OpenAI(base_url=...)` client works unchanged:

    POST /runs/<run>/v1/chat/completions   messages (+ tools) -> one assistant message
    POST /runs/<run>/v1/completions        prompt text or token ids -> one completion
    GET  /runs/<run>/v1/models

Every request's prompt and completion token ids are recorded and stitched into the run's
trajectories (envs/agent_stitch.py). Responses also carry them, vLLM-style: `prompt_token_ids` and
each choice's `token_ids`.

Batching: requests wait until every open run has one waiting, or until `batch_wait_s` after the
first arrived, and then go to the engine together (one call per distinct `stop`).

Sampling is the server's: temperature, top-p, top-k and the seed come from its `params` (the
trainer's log-probs assume them), and a request's own values for them are ignored. A request may
set `max_tokens` (or `max_completion_tokens`, at most `params.max_new_tokens`) and `stop`; `n` must
be 1, and streaming is not offered. Limits: a run's request beyond `max_turns`, or one whose
segment already holds `max_tokens` tokens after its prompt, is refused (400) and marks the run
truncated; a completion is cut to the tokens left.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
import uuid
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict

from alignkit.config.sampling import SamplingParams
from alignkit.envs.agent_stitch import RunRecord, normalise, reply_message
from alignkit.envs.chat_format import ChatFormat
from alignkit.envs.loop import Limits, cut_turn
from alignkit.envs.tool_parsers import get_parser
from alignkit.errors import AlignkitError
from alignkit.rollout.base import Generation, RolloutEngine

log = logging.getLogger("alignkit")


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    prompt: str | list[int] | list[str]
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False


@dataclass
class _Pending:
    prompt: list[int]
    max_new: int
    stop: tuple[str, ...]
    future: asyncio.Future


class _Batcher:
    """Merges waiting requests into engine calls; `run` is its loop, on the server's event loop."""

    def __init__(self, server: AgentServer):
        self.server = server
        self.pending: list[_Pending] = []
        self.arrived = asyncio.Event()
        self.calls = itertools.count()

    async def generate(self, prompt: list[int], max_new: int, stop: tuple[str, ...]) -> Generation:
        item = _Pending(prompt, max_new, stop, asyncio.get_running_loop().create_future())
        self.pending.append(item)
        self.arrived.set()
        return await item.future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.arrived.wait()
            deadline = loop.time() + self.server.batch_wait_s
            # every open run waiting means no request can join: go at once
            while len(self.pending) < self.server.open_runs and loop.time() < deadline:
                self.arrived.clear()
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.arrived.wait(), deadline - loop.time())
            batch, self.pending = self.pending, []
            self.arrived.clear()
            for stop in dict.fromkeys(p.stop for p in batch):
                await self._call([p for p in batch if p.stop == stop])

    async def _call(self, items: list[_Pending]) -> None:
        base = self.server.params
        params = dataclasses.replace(
            base, n=1, max_new_tokens=max(p.max_new for p in items), stop=list(items[0].stop),
            seed=None if base.seed is None else base.seed + 7919 * next(self.calls),
        )
        try:
            gens = await asyncio.to_thread(self.server.engine.generate, [p.prompt for p in items], params)
        except Exception as e:
            if len(items) > 1:  # one bad prompt (too long for the model) fails alone
                for p in items:
                    await self._call([p])
                return
            if not items[0].future.done():
                items[0].future.set_exception(e)
            return
        for p, gen in zip(items, gens, strict=True):
            if not p.future.done():
                p.future.set_result(cut_turn(gen, p.max_new, self.server.tokenizer))


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    return (stop,) if isinstance(stop, str) else tuple(stop or ())


class AgentServer:
    """Serves `engine` to agents; `params` (settable between batches of runs) is how it samples."""

    def __init__(self, engine: RolloutEngine, tokenizer, params: SamplingParams, limits: Limits,
                 template_kwargs: dict[str, Any] | None = None, tool_parser: str = "hermes",
                 batch_wait_s: float = 0.02, model_name: str = "alignkit-policy"):
        self.engine, self.tokenizer, self.params, self.limits = engine, tokenizer, params, limits
        self.template_kwargs = dict(template_kwargs or {})
        self.parse = get_parser(tool_parser)
        self.batch_wait_s = batch_wait_s
        self.model_name = model_name
        self.runs: dict[str, RunRecord] = {}
        self.app = self._build_app()
        self.url = ""
        self._served = None

    @property
    def open_runs(self) -> int:
        """Runs whose agent is still running: the most requests a batch can wait for."""
        return sum(not r.finished for r in list(self.runs.values()))

    # lifecycle -------------------------------------------------------------------------------------

    def start(self) -> AgentServer:
        from alignkit.local_server import serve_in_thread

        self._served = serve_in_thread(self.app, "the agent endpoint")
        self.url = self._served.url
        return self

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()

    def __enter__(self) -> AgentServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # runs ------------------------------------------------------------------------------------------

    def open_run(self) -> str:
        """A new run; its base URL is `base_url(run)`."""
        run = uuid.uuid4().hex[:12]
        self.runs[run] = RunRecord()
        return run

    def base_url(self, run: str) -> str:
        return f"{self.url}/runs/{run}/v1"

    def finish_run(self, run: str) -> None:
        """The run's agent returned: batches stop waiting for its requests."""
        if run in self.runs:
            self.runs[run].finished = True

    def close_run(self, run: str) -> RunRecord:
        """Stop serving `run` (its later requests get 404) and return what it recorded."""
        return self.runs.pop(run)

    # serving ---------------------------------------------------------------------------------------

    def _record(self, run: str) -> RunRecord:
        record = self.runs.get(run)
        if record is None:
            raise HTTPException(404, f"alignkit: no open agent run '{run}' (it ended or timed out)")
        return record

    def _budget(self, record: RunRecord, prompt: list[int], requested: int | None, n: int, stream: bool) -> tuple[int, int]:
        """(tokens this request may sample, tokens left in its segment); refuses it (400) past a limit,
        marking the run truncated."""
        if n != 1 or stream:
            raise HTTPException(400, "alignkit: the agent endpoint samples one completion per request, not streamed "
                                     "(n=1, stream=false)")
        if requested is not None and requested < 1:
            raise HTTPException(400, f"alignkit: max_tokens must be at least 1, got {requested}")
        left = self.limits.max_tokens - record.tokens_after_prompt(prompt)
        with record.lock:
            if record.requests >= self.limits.max_turns:
                record.truncation = "max_turns"
                raise HTTPException(400, f"alignkit: this run reached --env.max_turns {self.limits.max_turns}")
            if left <= 0:
                record.truncation = "max_tokens"
                raise HTTPException(400, f"alignkit: this run reached --env.max_tokens {self.limits.max_tokens}")
            record.requests += 1
        return min(requested or self.params.max_new_tokens, self.params.max_new_tokens, left), left

    def _usage(self, prompt: list[int], gen: Generation) -> dict[str, int]:
        return {"prompt_tokens": len(prompt), "completion_tokens": len(gen.response_ids),
                "total_tokens": len(prompt) + len(gen.response_ids)}

    @staticmethod
    def _note_cut(record: RunRecord, gen: Generation, left: int) -> None:
        if gen.finish_reason == "length" and len(gen.response_ids) >= left:
            record.truncation = "max_tokens"  # the segment's token budget, not the agent, ended this turn

    def _build_app(self) -> FastAPI:
        batcher: _Batcher | None = None

        @asynccontextmanager
        async def lifespan(_app: FastAPI):
            nonlocal batcher
            batcher = _Batcher(self)
            task = asyncio.create_task(batcher.run())
            yield
            task.cancel()

        app = FastAPI(title="alignkit agent endpoint", lifespan=lifespan)

        @app.get("/runs/{run}/v1/models")
        async def models(run: str) -> dict[str, Any]:
            self._record(run)
            return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "alignkit"}]}

        @app.post("/runs/{run}/v1/chat/completions")
        async def chat(run: str, req: ChatRequest) -> dict[str, Any]:
            record = self._record(run)
            messages = [normalise(m) for m in req.messages]
            try:
                fmt = ChatFormat(self.tokenizer, req.tools, self.template_kwargs, source="agent endpoint")
                prompt = record.chat_prompt(fmt, messages)
            except AlignkitError as e:
                raise HTTPException(400, str(e)) from None
            max_new, left = self._budget(record, prompt, req.max_completion_tokens or req.max_tokens, req.n, req.stream)
            start = time.monotonic()
            gen = await batcher.generate(prompt, max_new, _stops(req.stop))
            parsed = self.parse(gen.text) if req.tools else None
            reply = reply_message(parsed, gen.text)
            self._note_cut(record, gen, left)
            record.record(prompt, gen, time.monotonic() - start, (fmt, messages, reply), parsed)
            finish = "tool_calls" if reply.get("tool_calls") else gen.finish_reason
            return {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": self.model_name, "prompt_token_ids": prompt,
                "choices": [{"index": 0, "message": reply, "finish_reason": finish, "logprobs": None,
                             "token_ids": gen.response_ids}],
                "usage": self._usage(prompt, gen),
            }

        @app.post("/runs/{run}/v1/completions")
        async def completions(run: str, req: CompletionRequest) -> dict[str, Any]:
            record = self._record(run)
            value = req.prompt
            if isinstance(value, list) and value and isinstance(value[0], str):
                if len(value) != 1:
                    raise HTTPException(400, "alignkit: give one prompt per request")
                value = value[0]
            prompt = list(value) if isinstance(value, list) else list(self.tokenizer(value)["input_ids"])
            if not prompt:
                raise HTTPException(400, "alignkit: the prompt is empty")
            max_new, left = self._budget(record, prompt, req.max_tokens, req.n, req.stream)
            start = time.monotonic()
            gen = await batcher.generate(prompt, max_new, _stops(req.stop))
            self._note_cut(record, gen, left)
            record.record(prompt, gen, time.monotonic() - start)
            return {
                "id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion", "created": int(time.time()),
                "model": self.model_name, "prompt_token_ids": prompt,
                "choices": [{"index": 0, "text": gen.text, "finish_reason": gen.finish_reason, "logprobs": None,
                             "token_ids": gen.response_ids}],
                "usage": self._usage(prompt, gen),
            }

        return app
