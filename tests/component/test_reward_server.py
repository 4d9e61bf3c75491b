"""The reward server and its client over real HTTP on 127.0.0.1, and the reward-model scorer."""

from __future__ import annotations

import json
import shutil
import socket
import textwrap
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
import torch
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from alignkit.config.reward import ServeRewardConfig
from alignkit.errors import ConfigError, ModelError
from alignkit.local_server import serve_in_thread
from alignkit.rewards.base import RewardInput
from alignkit.rewards.function import function_reward
from alignkit.rewards.http_client import HttpReward
from alignkit.rewards.model import ModelReward
from alignkit.rewards.serve_command import build_served
from alignkit.rewards.server import build_app
from alignkit.rewards.validate import RewardError

REWARDS = textwrap.dedent(
    """
    import math

    SERVER = {server}

    def length(prompts, responses, labels):
        return {{"chars": [float(len(r)) for r in responses], "server": [SERVER] * len(responses)}}

    def nan(prompts, responses, labels):
        return [math.nan] * len(responses)
    """
)


@contextmanager
def serving(app):
    """Run `app` with uvicorn on a free port of 127.0.0.1 in a thread; yields its URL."""
    served = serve_in_thread(app, "reward server", timeout_s=10)
    try:
        yield served.url
    finally:
        served.stop(5)


def function_app(tmp_path, server: int, name: str = "length", max_batch: int = 16):
    path = tmp_path / f"rewards_{server}.py"
    path.write_text(REWARDS.format(server=float(server)))
    spec = f"{path}:{name}"
    return build_app(function_reward(spec), max_batch, 0.005, f"function {spec}")


def batch(n: int) -> RewardInput:
    return RewardInput(
        [f"prompt {i}" for i in range(n)], ["x" * i for i in range(n)], [str(i) for i in range(n)]
    )


def test_health_and_round_trip(tmp_path):
    with serving(function_app(tmp_path, 1)) as url:
        health = httpx.get(f"{url}/health", timeout=5).json()
        assert health["status"] == "ok" and health["reward"].endswith("rewards_1.py:length")
        out = HttpReward([url], timeout_s=5, retries=0, batch_size=3)(batch(8))
    assert out.scores.tolist() == [i + 1.0 for i in range(8)]  # chars + server id 1
    assert out.components["chars"].tolist() == [float(i) for i in range(8)]


def test_two_servers_share_a_batch_in_order(tmp_path):
    with serving(function_app(tmp_path, 1)) as a, serving(function_app(tmp_path, 2)) as b:
        out = HttpReward([a, b], timeout_s=5, retries=0, batch_size=2)(batch(7))
    assert out.components["server"].tolist() == [1, 1, 2, 2, 1, 1, 2]  # chunks of 2, round-robin
    assert out.components["chars"].tolist() == [float(i) for i in range(7)]


def test_concurrent_clients_are_answered_in_order(tmp_path):
    with serving(function_app(tmp_path, 1, max_batch=64)) as url:
        client = HttpReward([url], timeout_s=5, retries=0, batch_size=1)
        results = [None] * 4

        def work(k):
            results[k] = client(RewardInput([f"p{k}"] * 5, ["y" * (k + i) for i in range(5)]))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert [r.components["chars"].tolist() for r in results] == [
        [float(k + i) for i in range(5)] for k in range(4)
    ]


def test_server_reports_a_nan_reward(tmp_path):
    with serving(function_app(tmp_path, 1, name="nan")) as url, pytest.raises(RewardError) as e:
        HttpReward([url], timeout_s=5, retries=2)(batch(2))
    assert str(e.value).startswith(f"reward server {url} answered HTTP 422: reward function ")
    assert str(e.value).endswith("rewards_1.py:nan: reward for sample 0 (prompt 'prompt 0') is nan")


def test_stalling_server_times_out_naming_the_url():
    # A listening socket that never accepts: the connection opens, no answer ever comes.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(RewardError) as e:
            HttpReward([url], timeout_s=0.5, retries=1)(batch(2))
        elapsed = time.monotonic() - start
    assert str(e.value) == f"reward server {url} did not answer within 0.5 s (2 attempts)"
    assert elapsed < 3


def test_unreachable_server():
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(
        RewardError, match=rf"^reward server {url} cannot be reached \(ConnectError: .*\) \(2 attempts\)$"
    ):
        HttpReward([url], timeout_s=0.5, retries=1)(batch(1))


def garbage_app() -> FastAPI:
    app = FastAPI()

    @app.post("/text/score")
    async def text():
        return PlainTextResponse("all good!")

    @app.post("/keys/score")
    async def keys():
        return {"rewards": [1.0, 2.0]}

    @app.post("/short/score")
    async def short():
        return {"scores": [1.0]}

    return app


@pytest.mark.parametrize(
    ("route", "problem"),
    [
        ("text", " answered something that is not JSON: 'all good!'"),
        ("keys", " answered without a 'scores' list (got keys ['rewards'])"),
        ("short", ": returned 1 rewards for 2 samples; none for sample 1 (prompt 'prompt 1')"),
    ],
)
def test_garbage_answers(route, problem):
    with serving(garbage_app()) as base, pytest.raises(RewardError) as e:
        HttpReward([f"{base}/{route}"], timeout_s=5, retries=2)(batch(2))
    assert str(e.value) == f"reward server {base}/{route}{problem}"


def test_bad_request_is_rejected(tmp_path):
    with serving(function_app(tmp_path, 1)) as url:
        resp = httpx.post(f"{url}/score", json={"prompts": ["a", "b"], "responses": ["x"]}, timeout=5)
    assert resp.status_code == 422
    assert resp.json()["detail"] == "reward input has 2 prompts but 1 responses"


def test_serve_needs_exactly_one_source(tmp_path):
    with pytest.raises(ConfigError, match="give exactly one of --model_path"):
        build_served(ServeRewardConfig())
    with pytest.raises(ConfigError, match="give exactly one of --model_path"):
        build_served(ServeRewardConfig(model_path="m", function="f.py:g"))


@pytest.fixture(scope="module")
def rm_dir(tiny_dir, tmp_path_factory):
    """The tiny causal LM copied aside, with hand-written reward statistics (its head is random)."""
    out = tmp_path_factory.mktemp("rm") / "model"
    shutil.copytree(tiny_dir, out)
    (out / "reward_stats.json").write_text(json.dumps({"mean": 0.5, "std": 2.0, "count": 10}))
    return out


def rm_batch(n: int) -> RewardInput:
    return RewardInput([f"{i}+{i}=" for i in range(n)], [str(2 * i) * (1 + i % 3) for i in range(n)])


def load_rm(rm_dir, normalize: bool, batch_size: int) -> ModelReward:
    torch.manual_seed(0)  # the same random head for every load of the untrained folder
    return ModelReward(str(rm_dir), normalize=normalize, batch_size=batch_size, device="cpu")


def test_reward_model_shapes_determinism_and_normalization(rm_dir):
    raw, small, norm = load_rm(rm_dir, False, 64), load_rm(rm_dir, False, 2), load_rm(rm_dir, True, 3)
    b = rm_batch(5)
    r1, r2 = raw(b).scores, raw(b).scores
    assert r1.shape == (5,) and r1.dtype == torch.float32
    assert torch.equal(r1, r2)
    assert torch.allclose(small(b).scores, r1, atol=1e-5)  # packing and chunking do not change a score
    assert torch.allclose(norm(b).scores, (r1 - 0.5) / 2.0, atol=1e-5)
    assert r1.std() > 0  # the samples are told apart


def test_reward_model_served(rm_dir):
    fn, description = build_served(ServeRewardConfig(model_path=str(rm_dir), device="cpu", max_batch=4))
    assert description == f"reward model {rm_dir} (normalized)"
    b = rm_batch(6)
    with serving(build_app(fn, 4, 0.005, description)) as url:
        served = HttpReward([url], timeout_s=10, retries=0, batch_size=3)(b)
    assert torch.allclose(served.scores, fn(b).scores, atol=1e-5)


def test_reward_model_without_stats(tiny_dir):
    with pytest.raises(
        ModelError, match="reward_stats.json not found: train the reward model with --rm.normalize true"
    ):
        ModelReward(str(tiny_dir), normalize=True, batch_size=4, device="cpu")


def test_reward_model_bad_stats(rm_dir, tmp_path):
    bad = tmp_path / "rm"
    shutil.copytree(rm_dir, bad)
    (bad / "reward_stats.json").write_text(json.dumps({"mean": 0.0, "std": 0.0}))
    with pytest.raises(ModelError, match="needs a finite mean and a positive std, got mean 0.0, std 0.0"):
        ModelReward(str(bad), normalize=True, batch_size=4, device="cpu")
