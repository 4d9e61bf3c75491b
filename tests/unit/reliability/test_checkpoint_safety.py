"""Checkpoints load no code, carry a checksum manifest, and a damaged one is skipped or named."""

import builtins
import logging
import random

import numpy as np
import pytest
import torch

from alignkit.checkpoint.atomic import remove_leftovers
from alignkit.checkpoint.manifest import DamagedCheckpoint, write_manifest
from alignkit.checkpoint.state import TrainerState, read_state, resolve_resume, save_state
from alignkit.errors import AlignkitError


def save(ckpt_dir, step: int):
    weights = {"model": {"w": torch.arange(6.0).view(2, 3) * step}}
    optim = {"model": {"optimizer": {"state": {"w": {"exp_avg": torch.ones(2, 3)}}, "param_groups": []},
                       "scheduler": {"last_epoch": step, "base_lrs": [1e-3]}}}
    return save_state(ckpt_dir, weights, optim, TrainerState(step=step, extra={"kl": {"value": 0.1}}), keep=5,
                      record={"command": "sft", "fingerprint": "f", "config": {}})


class Payload:
    """Unpickling this runs code: exec writes the file named in `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path):
    ckpt = save(tmp_path / "checkpoints", 3)
    marker = tmp_path / "pwned.txt"
    torch.save({"backends": {}, "rng": Payload(marker)}, ckpt / "trainer_state.pt")
    write_manifest(ckpt)  # whoever crafts the file can write a matching manifest too
    with pytest.raises(AlignkitError, match=r"trainer_state.pt: refused to load: it holds a Python object \(exec\), "
                                            r"not only tensors and plain data, and loading it could run code"):
        read_state(ckpt, ["model"])
    assert not marker.exists()
    torch.load(ckpt / "trainer_state.pt", weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.read_text() == "pwned"


def test_state_and_rng_round_trip_as_tensors_and_json(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    ckpt = save(tmp_path, 4)
    expect = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    state, weights, backends = read_state(ckpt, ["model"])
    assert (random.random(), np.random.rand(), torch.rand(1)) == expect
    assert state == TrainerState(step=4, extra={"kl": {"value": 0.1}})
    assert torch.equal(weights["model"]["w"], torch.arange(6.0).view(2, 3) * 4)
    assert backends["model"]["scheduler"] == {"last_epoch": 4, "base_lrs": [1e-3]}
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "manifest.json", "model.safetensors", "run.json", "trainer_state.json", "trainer_state.pt"]


def flip_a_bit(path, offset=-5):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_latest_skips_a_damaged_checkpoint_and_says_so(tmp_path, caplog):
    ckpts = tmp_path / "checkpoints"
    save(ckpts, 1), save(ckpts, 2)
    flip_a_bit(ckpts / "step_2" / "model.safetensors")  # a weight changes; the file still parses
    with caplog.at_level(logging.WARNING, "alignkit"):
        assert resolve_resume("latest", ckpts) == ckpts / "step_1"
    assert "checkpoint step_2 is damaged" in caplog.text and "checksum differs" in caplog.text
    assert f"resuming from {ckpts / 'step_1'}, the newest whole checkpoint" in caplog.text
    with pytest.raises(DamagedCheckpoint, match=r"step_2/model.safetensors: checksum differs from the manifest"):
        resolve_resume(str(ckpts / "step_2"), ckpts)


def test_truncated_files_are_named(tmp_path):
    ckpts = tmp_path / "checkpoints"
    path = save(ckpts, 1)
    state = path / "trainer_state.pt"
    size = state.stat().st_size
    state.write_bytes(state.read_bytes()[: size // 2])
    with pytest.raises(DamagedCheckpoint, match=rf"step_1/trainer_state.pt: {size // 2} bytes, the manifest says "
                                                rf"{size} \(truncated or replaced\)"):
        resolve_resume(str(path), ckpts)
    with pytest.raises(DamagedCheckpoint, match=r"every checkpoint in .* is damaged; the newest: .*trainer_state.pt"):
        resolve_resume("latest", ckpts)
    (path / "manifest.json").unlink()
    with pytest.raises(DamagedCheckpoint, match=r"step_1/manifest.json: missing"):
        resolve_resume(str(path), ckpts)


def test_leftovers_of_interrupted_saves_are_removed(tmp_path):
    for name in (".step_4.tmp-123", ".final.old-77", "step_2", ".hidden"):
        (tmp_path / name).mkdir()
    assert sorted(p.name for p in remove_leftovers(tmp_path)) == [".final.old-77", ".step_4.tmp-123"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "step_2"]
