"""`--rollout.engine vllm` settings are checked before anything loads, and on the local executor the
engine sleeps while the trainer uses the GPU."""

import sys

import pytest

from alignkit.config.rl import RLConfig
from alignkit.config.rollout import RolloutConfig
from alignkit.config.schema import RayConfig
from alignkit.errors import AlignkitError, ConfigError
from alignkit.orchestration.colocate import SleepingRollout
from alignkit.orchestration.factory import build_executor
from alignkit.trainers.rl.validate import validate_engine


def cfg(executor="local", ray=None, **rollout):
    return RLConfig(executor=executor, rollout=RolloutConfig(**rollout), ray=ray or RayConfig())


@pytest.mark.parametrize(("c", "message"), [
    (cfg(engine="sglang"), "--rollout.engine must be one of hf, vllm, got 'sglang'"),
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


class Worker:
    def __init__(self, *args):
        self.calls = []

    def __getattr__(self, name):
        return lambda *a: self.calls.append(name)


def test_local_vllm_rollout_sleeps_between_calls():
    ex = build_executor(cfg(engine="vllm"))
    rollout = ex.create("rollout", Worker)
    assert isinstance(rollout, SleepingRollout) and not isinstance(ex.create("policy", Worker), SleepingRollout)
    rollout.generate([[1]], None)
    rollout.load_weights([])
    assert rollout.group.calls == ["generate", "sleep", "wake_up", "load_weights"]
    assert isinstance(build_executor(cfg(engine="hf")).create("rollout", Worker), Worker)
