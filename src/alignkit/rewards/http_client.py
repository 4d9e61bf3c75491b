"""Client of reward servers (`alignkit serve-reward`, or any server speaking the same JSON).

Protocol: `POST <url>/score` with `{"prompts": [...], "responses": [...], "labels": [...]}` answers
`{"scores": [...], "components": {name: [...]}}`, one number per sample in order.

A batch is cut into chunks of `batch_size` samples; chunk k goes to `urls[k % len(urls)]`, and a pool
of `len(urls)` threads sends them concurrently; results are put back in order. A chunk whose answer is
not complete within `timeout_s` (a deadline for the whole exchange), that cannot connect or gets
502/503/504 is retried on the same server after a backoff (0.25 s, then doubling up to 4 s); once its
retries are spent the error names the server. With ALIGNKIT_REWARD_TOKEN set, each request carries it
as a bearer token. An answer with the wrong
content (not JSON, missing keys, wrong length, NaN) or another HTTP error is not retried: the server
would answer the same again.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import torch

from alignkit.errors import ConfigError
from alignkit.rewards.base import RewardInput, RewardOutput
from alignkit.rewards.sandbox import CallFailed, CallTimedOut, call_bounded
from alignkit.rewards.validate import RewardError, check_scores, labels_of

RETRY_STATUS = (502, 503, 504)
TOKEN_ENV = "ALIGNKIT_REWARD_TOKEN"  # sent as a bearer token when set (alignkit serve-reward --token)
BACKOFF_S = 0.25
MAX_BACKOFF_S = 4.0


@dataclass(frozen=True)
class Chunk:
    """Samples `start .. start + len(batch.prompts) - 1` of the whole batch, for server `url`."""

    url: str
    start: int
    batch: RewardInput


def _body(chunk: Chunk) -> bytes:
    b = chunk.batch
    try:
        return json.dumps(
            {"prompts": b.prompts, "responses": b.responses, "labels": b.labels}, allow_nan=False
        ).encode()
    except (TypeError, ValueError) as e:
        raise RewardError(f"labels must be JSON values to send to reward server {chunk.url} ({e})") from None


def _exchange(client: httpx.Client, chunk: Chunk, body: bytes, timeout_s: float) -> httpx.Response:
    """One POST and its whole answer. Reading stops at the deadline between chunks of the answer as
    well, so that a trickling server also ends the thread `_post` gave up on."""
    deadline = time.monotonic() + timeout_s
    with client.stream("POST", f"{chunk.url}/score", content=body, headers=_headers(), timeout=timeout_s) as resp:
        raw = bytearray()
        for part in resp.iter_raw():
            raw += part
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout("the answer took longer than the deadline", request=resp.request)
    # Undecoded bytes and the original headers: the new response decodes them once, on read.
    return httpx.Response(resp.status_code, headers=resp.headers, content=bytes(raw), request=resp.request)


def _headers() -> dict[str, str]:
    token = os.environ.get(TOKEN_ENV, "")
    return {"content-type": "application/json"} | ({"authorization": f"Bearer {token}"} if token else {})


def _post(client: httpx.Client, chunk: Chunk, timeout_s: float, retries: int) -> httpx.Response:
    """POST with retries on transient failures; a RewardError naming the server once they are spent.
    Each attempt, connecting, sending and receiving the whole answer, ends after `timeout_s` (a deadline,
    not a per-read timeout: a server that sends a byte every few seconds cannot stretch it)."""
    body = _body(chunk)
    for attempt in range(retries + 1):
        try:
            resp = call_bounded(lambda: _exchange(client, chunk, body, timeout_s), timeout_s, chunk.url)
        except CallTimedOut:
            problem = f"did not answer within {timeout_s:g} s"
        except CallFailed as failed:
            if isinstance(failed.error, httpx.TimeoutException):
                problem = f"did not answer within {timeout_s:g} s"
            elif isinstance(failed.error, httpx.TransportError):
                problem = f"cannot be reached ({type(failed.error).__name__}: {failed.error})"
            else:
                raise failed.error from None
        else:
            if resp.status_code not in RETRY_STATUS:
                return resp
            problem = f"answered HTTP {resp.status_code}"
        if attempt < retries:
            time.sleep(min(BACKOFF_S * 2**attempt, MAX_BACKOFF_S))
    raise RewardError(f"reward server {chunk.url} {problem} ({retries + 1} attempts)")


def _parse(resp: httpx.Response, chunk: Chunk) -> RewardOutput:
    """The server's answer -> RewardOutput, or a RewardError saying what is wrong with it."""
    source = f"reward server {chunk.url}"
    try:
        data = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        if resp.is_success:
            raise RewardError(f"{source} answered something that is not JSON: {resp.text[:80]!r}") from None
        data = None
    if not resp.is_success:
        detail = data.get("detail", data) if isinstance(data, dict) else resp.text[:200]
        hint = f" (set {TOKEN_ENV} to the server's token)" if resp.status_code == 401 else ""
        raise RewardError(f"{source} answered HTTP {resp.status_code}: {detail}{hint}")
    if not isinstance(data, dict) or "scores" not in data:
        got = f"keys {sorted(data)}" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        raise RewardError(f"{source} answered without a 'scores' list (got {got})")
    components = data.get("components") or {}
    if not isinstance(components, dict):
        raise RewardError(
            f"{source}: 'components' must map names to lists, got a JSON {type(components).__name__}"
        )
    b, at = chunk.batch, chunk.start
    parts = {str(k): check_scores(v, b, f"{source}, component '{k}'", at) for k, v in components.items()}
    return RewardOutput(check_scores(data["scores"], b, source, at), parts)


def _merge(outputs: list[RewardOutput], chunks: list[Chunk]) -> RewardOutput:
    """Chunk outputs, in order -> one output; every chunk must carry the same components."""
    names = set(outputs[0].components)
    for out, chunk in zip(outputs, chunks, strict=True):
        if set(out.components) != names:
            raise RewardError(
                f"reward server {chunk.url} answered components {sorted(out.components)}, "
                f"{chunks[0].url} {sorted(names)}: all servers must serve the same reward"
            )
    scores = torch.cat([o.scores for o in outputs])
    return RewardOutput(scores, {n: torch.cat([o.components[n] for o in outputs]) for n in sorted(names)})


@dataclass(frozen=True)
class HttpReward:
    """The `RewardFn` of one or more reward servers (which must serve the same reward)."""

    urls: list[str]
    timeout_s: float = 30.0
    retries: int = 2
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not self.urls:
            raise ConfigError("--reward.urls: give at least one reward server URL")
        bad = [u for u in self.urls if not u.startswith(("http://", "https://"))]
        if bad:
            raise ConfigError(f"--reward.urls: {', '.join(bad)}: a URL starts with http:// or https://")

    def chunks(self, batch: RewardInput) -> list[Chunk]:
        labels = labels_of(batch)
        urls = [u.rstrip("/") for u in self.urls]
        out = []
        for k, start in enumerate(range(0, len(labels), self.batch_size)):
            part = slice(start, start + self.batch_size)
            out.append(
                Chunk(
                    urls[k % len(urls)],
                    start,
                    RewardInput(batch.prompts[part], batch.responses[part], labels[part], batch.sources[part]),
                )
            )
        return out

    def __call__(self, batch: RewardInput) -> RewardOutput:
        chunks = self.chunks(batch)
        if not chunks:
            return RewardOutput(torch.zeros(0))
        with (
            httpx.Client(timeout=self.timeout_s) as client,
            ThreadPoolExecutor(max_workers=len(self.urls), thread_name_prefix="reward-http") as pool,
        ):
            outputs = list(
                pool.map(lambda c: _parse(_post(client, c, self.timeout_s, self.retries), c), chunks)
            )
        return _merge(outputs, chunks)
