"""DeepSpeed backend. The missing-extra message is always checked; where DeepSpeed (>= 0.19.5) is
installed, the 2-process CPU runs of test_fsdp2_backend (gloo, DS_ACCELERATOR=cpu) are repeated, against
the one-process torch backend, with the same tolerances (first-step loss 1e-6; later losses, grad norms,
lr and final weights 1e-4; resume 1e-6; checkpoints loaded across backends bit-equal, continuing within
1e-4): SFT at ZeRO-2 and at ZeRO-3 with CPU offload, and the critic and reward-model loss at ZeRO-3 (where
calling the backbone and head around the engine, as models/forward.py once did, gave wrong gradients).
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
from test_fsdp2_backend import (
    CPU,
    HEAD_KEYS,
    assert_matches,
    assert_resumes,
    reference_run,
    spawn,
    spawn_workers,
    value_reference_run,
    value_worker,
)

from alignkit.backends.deepspeed import import_deepspeed
from alignkit.backends.factory import build_backend
from alignkit.config.schema import BackendConfig, TrainConfig
from alignkit.errors import AlignkitError


def test_missing_deepspeed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # `import deepspeed` now fails
    with pytest.raises(AlignkitError) as err:
        build_backend(torch.nn.Linear(2, 2), TrainConfig(), 1, CPU, BackendConfig(backend="deepspeed"))
    assert str(err.value) == "--policy.backend deepspeed needs DeepSpeed: pip install 'alignkit[deepspeed]'"


def test_old_deepspeed_names_the_version_needed(monkeypatch):
    # Before 0.19.5 there is no unmanaged gradient accumulation: a step of several micro-batches would
    # silently keep only the last one's gradients.
    old = types.SimpleNamespace(DeepSpeedEngine=object, __version__="0.15.4")
    monkeypatch.setitem(sys.modules, "deepspeed", old)
    with pytest.raises(AlignkitError, match=r"needs DeepSpeed >= 0\.19\.5 \(found 0\.15\.4\)"):
        import_deepspeed()


def deepspeed_unusable() -> str:
    """Why the equivalence runs cannot run here ('' when they can)."""
    try:
        import_deepspeed()
    except AlignkitError as e:
        return str(e)
    return ""


@pytest.fixture(scope="module")
def reference(tiny_dir):
    """The one-process torch run to compare with; skips where DeepSpeed cannot run."""
    if reason := deepspeed_unusable():
        pytest.skip(f"DeepSpeed is not usable here: {reason}")
    return reference_run(tiny_dir)


@pytest.mark.parametrize(("stage", "offload"), [(2, False), (3, True)], ids=["zero2", "zero3-offload"])
def test_deepspeed_matches_the_torch_backend_and_resumes(reference, stage, offload, tiny_dir, tmp_path, monkeypatch):
    # Workers train on the CPU with gloo even where a GPU exists; the spawned workers inherit this.
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    cfg = BackendConfig(backend="deepspeed", zero_stage=stage, offload=offload)
    sharded = spawn_workers(tmp_path, tiny_dir, cfg, reference)
    assert sharded[0]["metrics"] == sharded[1]["metrics"]
    assert_matches(sharded, reference, first_tol=1e-6, tol=1e-4)
    assert_resumes(sharded, reference, tmp_path, tiny_dir)


def test_deepspeed_value_and_reward_model_match_the_torch_backend(reference, tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    sharded = spawn(value_worker, tmp_path, tiny_dir, BackendConfig(backend="deepspeed", zero_stage=3))
    assert sharded[0]["metrics"] == sharded[1]["metrics"]
    assert_matches(sharded, value_reference_run(tiny_dir), first_tol=1e-6, tol=1e-4, keys=HEAD_KEYS)
