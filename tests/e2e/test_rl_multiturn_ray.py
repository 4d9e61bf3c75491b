"""Multi-turn `alignkit rl --executor ray`: the environment loop runs on the controller and generates
through the rollout actor group; the same numbers as the local executor, and asynchronous rollouts."""

import pytest
import ray
from helpers import run_cli
from test_rl_multiturn import env_flags

from alignkit.metrics.logger import read_metrics


@pytest.fixture(scope="module", autouse=True)
def ray_local():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _run(tiny_dir, path, steps, **flags):
    path.mkdir()
    assert run_cli("rl", "--preset", "grpo", *env_flags(tiny_dir, path, steps, **flags)) == 0
    return read_metrics(path / "rl")


def test_ray_matches_local(tiny_dir, tmp_path):
    (local,) = _run(tiny_dir, tmp_path / "local", 1)
    (remote,) = _run(tiny_dir, tmp_path / "ray", 1, executor="ray", **{"ray.cpus_per_worker": 0.5})
    for key in ("reward/mean", "loss", "entropy", "env/model_tokens_mean", "env/env_tokens_mean"):
        assert remote[key] == local[key], key


def test_async_multiturn_rollouts(tiny_dir, tmp_path):
    rows = _run(tiny_dir, tmp_path / "async", 2, executor="ray", **{
        "ray.cpus_per_worker": 0.5, "rollout.async": "true", "rollout.max_staleness": 1})
    assert [r["rollout/staleness"] for r in rows] == [0, 1]
    assert all(r["env/turns_mean"] == 2 and r["env/failed"] == 0 for r in rows)
    assert all(r["logprob_mismatch/ratio_max"] > 0 for r in rows)
