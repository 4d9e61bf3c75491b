"""Atomic directories, retention, and resolving --resume."""

import pytest

from alignkit.checkpoint.atomic import atomic_dir
from alignkit.checkpoint.manifest import write_manifest
from alignkit.checkpoint.state import list_checkpoints, resolve_resume
from alignkit.errors import AlignkitError


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "step_1"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("killed mid-save")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_whole(tmp_path):
    target = tmp_path / "final"
    for content in ("old", "new"):
        with atomic_dir(target) as tmp:
            (tmp / "f").write_text(content)
    assert (target / "f").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_latest_ignores_incomplete_saves(tmp_path):
    for name in ("step_2", "step_10", ".step_12.tmp-99"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "trainer_state.pt").write_bytes(b"x")
        write_manifest(tmp_path / name)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_2", "step_10"]
    assert resolve_resume("latest", tmp_path).name == "step_10"
    assert resolve_resume("", tmp_path) is None


def test_resume_from_a_folder_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(AlignkitError, match=r"--resume .*nope: not a checkpoint folder \(no trainer_state.pt\)"):
        resolve_resume(str(tmp_path / "nope"), tmp_path)
