"""The reward server's limits over real HTTP (body size, deadline, bearer token, a stuck reward on
/health, SIGTERM), and the client's total deadline against a server that trickles its answer."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from test_reward_server import batch, serving

import alignkit
from alignkit.rewards.function import function_reward
from alignkit.rewards.http_client import HttpReward
from alignkit.rewards.server import build_app
from alignkit.rewards.validate import RewardError

REWARDS = textwrap.dedent(
    """
    import time

    def stuck(prompts, responses, labels):
        if "STUCK" in responses:
            time.sleep(3600)
        return [float(len(r)) for r in responses]
    """
)


@pytest.fixture
def stuck_spec(tmp_path):
    p = tmp_path / "rw.py"
    p.write_text(REWARDS)
    return f"{p}:stuck"


def trickle_app() -> FastAPI:
    app = FastAPI()

    @app.post("/score")
    async def score():
        async def slowly():
            for _ in range(100):
                yield b" "
                await asyncio.sleep(0.3)

        return StreamingResponse(slowly(), media_type="application/json")

    return app


def test_a_trickling_server_meets_the_total_deadline():
    # A byte every 0.3 s: no single read ever waits 1 s, but the whole answer would take 30 s.
    with serving(trickle_app()) as url:
        t0 = time.monotonic()
        with pytest.raises(RewardError) as e:
            HttpReward([url], timeout_s=1.0, retries=0)(batch(2))
        elapsed = time.monotonic() - t0
    assert str(e.value) == f"reward server {url} did not answer within 1 s (1 attempts)"
    assert elapsed < 2.5


def test_body_limit_and_bearer_token(stuck_spec, monkeypatch):
    app = build_app(function_reward(stuck_spec, None), 16, 0.005, "f", token="s3cret", max_body_bytes=2000)
    good = {"prompts": ["p"], "responses": ["abc"]}
    with serving(app) as url:
        assert httpx.post(f"{url}/score", json=good, timeout=5).status_code == 401
        bearer = {"authorization": "Bearer s3cret"}
        assert httpx.post(f"{url}/score", json=good, headers=bearer, timeout=5).json()["scores"] == [3.0]
        big = {"prompts": ["p"], "responses": ["y" * 5000]}
        resp = httpx.post(f"{url}/score", json=big, headers=bearer, timeout=5)
        assert resp.status_code == 413 and resp.json()["detail"].endswith("the server takes at most 2000 (--max_body_mb)")
        chunked = httpx.post(f"{url}/score", content=iter([b"{}"]), headers=bearer, timeout=5)
        assert chunked.status_code == 411
        assert httpx.get(f"{url}/health", timeout=5).json()["status"] == "ok"  # /health needs no token
        monkeypatch.setenv("ALIGNKIT_REWARD_TOKEN", "s3cret")
        assert HttpReward([url], timeout_s=5)(batch(2)).scores.tolist() == [0.0, 1.0]
        monkeypatch.setenv("ALIGNKIT_REWARD_TOKEN", "wrong")
        with pytest.raises(RewardError, match=r"answered HTTP 401: missing or wrong bearer token .*\(set "
                                              r"ALIGNKIT_REWARD_TOKEN to the server's token\)$"):
            HttpReward([url], timeout_s=5, retries=0)(batch(2))


def test_a_stuck_reward_gets_504_and_shows_on_health(stuck_spec):
    app = build_app(function_reward(stuck_spec, None), 16, 0.005, "f", timeout_s=0.5)
    with serving(app) as url:
        resp = httpx.post(f"{url}/score", json={"prompts": ["p"], "responses": ["STUCK"]}, timeout=5)
        assert resp.status_code == 504 and resp.json()["detail"].startswith("no scores within 0.5 s (--timeout_s)")
        health = httpx.get(f"{url}/health", timeout=5)
        assert health.status_code == 503 and health.json()["status"] == "stuck"
        assert "longer than the 0.5 s deadline" in health.json()["detail"]
        later = httpx.post(f"{url}/score", json={"prompts": ["p"], "responses": ["fine"]}, timeout=5)
        assert later.status_code == 504  # it waits behind the stuck call: the reward never runs twice at once


def test_sigterm_stops_the_server_even_with_a_stuck_reward(stuck_spec):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = os.environ | {"PYTHONPATH": str(Path(alignkit.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "alignkit.cli", "serve-reward", "--function", stuck_spec, "--port",
                             str(port), "--timeout_s", "30"], env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
        try:
            httpx.get(f"{url}/health", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.2)
    with pytest.raises(httpx.TimeoutException):  # the reward is now stuck for good
        httpx.post(f"{url}/score", json={"prompts": ["p"], "responses": ["STUCK"]}, timeout=1)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM, err  # ended by its signal: status 143 in a shell
    assert time.monotonic() - t0 < 15
    assert "alignkit: reward server stopped (a call of the reward was still running)" in err
