"""The reward-server client's chunking and its reading of answers, without a network."""

from __future__ import annotations

import httpx
import pytest

from alignkit.errors import ConfigError
from alignkit.rewards.base import RewardInput
from alignkit.rewards.http_client import Chunk, HttpReward, _parse
from alignkit.rewards.validate import RewardError

URL = "http://127.0.0.1:9"


def test_chunks_round_robin_in_order():
    batch = RewardInput([f"p{i}" for i in range(7)], [f"r{i}" for i in range(7)])
    chunks = HttpReward(["http://a/", "http://b"], batch_size=3).chunks(batch)
    assert [(c.url, c.start, c.batch.prompts) for c in chunks] == [
        ("http://a", 0, ["p0", "p1", "p2"]),
        ("http://b", 3, ["p3", "p4", "p5"]),
        ("http://a", 6, ["p6"]),
    ]
    assert chunks[2].batch.labels == [None]


def test_needs_a_url():
    with pytest.raises(ConfigError, match="give at least one reward server URL"):
        HttpReward([])
    with pytest.raises(ConfigError, match="127.0.0.1:8000: a URL starts with http:// or https://"):
        HttpReward(["127.0.0.1:8000"])


def chunk(n: int = 2, start: int = 3) -> Chunk:
    return Chunk(URL, start, RewardInput([f"prompt {start + i}" for i in range(n)], ["r"] * n, [None] * n))


def parse_error(resp: httpx.Response) -> str:
    with pytest.raises(RewardError) as e:
        _parse(resp, chunk())
    return str(e.value)


def test_good_answer():
    out = _parse(httpx.Response(200, json={"scores": [1, 2.5], "components": {"x": [0, 1]}}), chunk())
    assert out.scores.tolist() == [1.0, 2.5] and out.components["x"].tolist() == [0.0, 1.0]


def test_not_json():
    assert (
        parse_error(httpx.Response(200, text="<html>oops"))
        == f"reward server {URL} answered something that is not JSON: '<html>oops'"
    )


def test_wrong_keys():
    assert (
        parse_error(httpx.Response(200, json={"score": [1, 2]}))
        == f"reward server {URL} answered without a 'scores' list (got keys ['score'])"
    )
    assert (
        parse_error(httpx.Response(200, json=[1, 2]))
        == f"reward server {URL} answered without a 'scores' list (got a JSON list)"
    )


def test_wrong_length_counts_from_the_chunk_start():
    assert parse_error(httpx.Response(200, json={"scores": [1]})) == (
        f"reward server {URL}: returned 1 rewards for 2 samples; none for sample 4 (prompt 'prompt 4')"
    )


def test_null_score_and_bad_component():
    assert parse_error(httpx.Response(200, json={"scores": [1, None]})) == (
        f"reward server {URL}: reward missing (None) for sample 4 (prompt 'prompt 4')"
    )
    assert parse_error(httpx.Response(200, json={"scores": [1, 2], "components": {"c": "x"}})) == (
        f"reward server {URL}, component 'c': expected a list of 2 numbers, got str"
    )


def test_http_error_shows_the_detail():
    assert (
        parse_error(httpx.Response(422, json={"detail": "reward is nan"}))
        == f"reward server {URL} answered HTTP 422: reward is nan"
    )
    assert (
        parse_error(httpx.Response(404, text="Not Found"))
        == f"reward server {URL} answered HTTP 404: Not Found"
    )
