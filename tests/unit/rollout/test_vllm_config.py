"""`--rollout.engine vllm` settings are checked before anything loads, and on the local executor the
engine sleeps while the trainer uses the GPU."""
# A colocated rollout that sleeps after generating and wakes before new weights: test_rollout_sleeps.py

import sys

import pytest

from alignkit.config.parse import parse_config
from alignkit.config.rl import RLConfig
from alignkit.config.rollout import RolloutConfig
from alignkit.config.schema import RayConfig
from alignkit.errors import AlignkitError, ConfigError
from alignkit.orchestration.factory import build_executor
from alignkit.orchestration.roles import roles
from alignkit.trainers.rl.validate import validate_engine


def cfg(executor="local", ray=None, **rollout):
    return RLConfig(executor=executor, rollout=RolloutConfig(**rollout), ray=ray or RayConfig())


def test_unknown_engine_is_a_parse_error():
    with pytest.raises(ConfigError, match=r"^--rollout.engine must be one of hf, vllm, got 'sglang'$"):
        parse_config(RLConfig, ["--rollout.engine", "sglang"], "alignkit rl")


@pytest.mark.parametrize(("c", "message"), [
    (cfg(engine="vllm", tensor_parallel_size=0), "tensor_parallel_size must be at least 1"),
    (cfg(engine="vllm", gpu_memory_utilization=1.5), r"gpu_memory_utilization must be in \(0, 1\]"),
    (cfg(engine="vllm", tis_cap=0.0), "tis_cap must be positive"),
    (cfg("ray", RayConfig(gpus_per_worker=1), engine="vllm", tensor_parallel_size=2),
     "tensor_parallel_size 2 needs as many GPUs per rollout worker; --ray.gpus_per_worker is 1"),
])
def test_bad_engine_settings(c, message):
    with pytest.raises(ConfigError, match=message):
        validate_engine(c)


def test_a_missing_vllm_stops_the_run_before_models_load(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(AlignkitError, match=r"alignkit\[vllm\]"):
        validate_engine(cfg(engine="vllm"))
    validate_engine(cfg(engine="hf"))  # the HF engine never imports vLLM


def test_local_vllm_rollout_sleeps_between_calls():
    """Everything shares one device: an engine that holds its memory between calls (vLLM) gives it back."""
    for engine, sleeps in (("vllm", True), ("hf", False)):
        c = cfg(engine=engine)
        assert build_executor(c, roles(c)).rollout_sleeps() is sleeps
