"""Backend selection by --policy.backend, and the errors that say how to fix a bad choice."""

from __future__ import annotations

import pytest
import torch

from alignkit.backends.factory import build_backend
from alignkit.backends.torch_local import TorchBackend
from alignkit.config.schema import BackendConfig, TrainConfig
from alignkit.errors import AlignkitError, ConfigError

CPU = torch.device("cpu")


def build(cfg: BackendConfig | None = None):
    args = (torch.nn.Linear(4, 4), TrainConfig(), 10, CPU)
    return build_backend(*args) if cfg is None else build_backend(*args, cfg)


def test_torch_is_the_default():
    assert isinstance(build(), TorchBackend)
    assert isinstance(build(BackendConfig(backend="torch")), TorchBackend)


def test_unknown_backend_lists_the_choices():
    with pytest.raises(ConfigError, match=r"--policy.backend 'megatron': unknown; choose one of torch, fsdp2, deepspeed"):
        build(BackendConfig(backend="megatron"))


def needs_process_group(name: str):
    return pytest.raises(AlignkitError, match=rf"--policy.backend {name} runs one process per worker .*--executor ray")


def test_fsdp2_needs_a_process_group():
    with needs_process_group("fsdp2"):
        build(BackendConfig(backend="fsdp2"))


def test_deepspeed_needs_a_process_group():
    pytest.importorskip("deepspeed", minversion="0.19.5")
    with needs_process_group("deepspeed"):
        build(BackendConfig(backend="deepspeed"))


def test_bad_zero_stage_is_a_config_error():
    with pytest.raises(ConfigError, match=r"--policy.zero_stage 4: choose 1, 2 or 3"):
        build(BackendConfig(backend="deepspeed", zero_stage=4))


def test_torch_backend_full_weights_are_the_named_parameters():
    backend = build()
    assert [n for n, _ in backend.full_weights()] == ["weight", "bias"]
    backend.load_full_weights({"bias": torch.ones(4)})
    assert torch.equal(backend.trainable_weights()["bias"], torch.ones(4))
