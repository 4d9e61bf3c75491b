"""One run per output directory (a live holder refuses, a dead one's lock is taken over with a warning);
disk errors are one line naming the path; a torn last metrics line is dropped."""

import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import alignkit
from alignkit.errors import AlignkitError
from alignkit.metrics.logger import read_metrics
from alignkit.runtime.disk import save_torch, writing
from alignkit.runtime.lock import LOCK_FILE, run_lock

SRC = str(Path(alignkit.__file__).parents[1])
HOLD = "import sys, time; from pathlib import Path; from alignkit.runtime.lock import acquire; " \
       "acquire(Path(sys.argv[1])); print('locked', flush=True); time.sleep(120)"


def test_a_live_holder_refuses_and_a_dead_ones_lock_is_taken_over(tmp_path, caplog):
    env = os.environ | {"PYTHONPATH": SRC}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        busy = rf"^{tmp_path} is in use by another run \(PID {holder.pid} on .*; wait for it to end, stop it, or choose"
        with pytest.raises(AlignkitError, match=busy), run_lock(tmp_path):
            pass
    finally:
        holder.kill()  # dies without cleaning up: its lock file still names it
        holder.wait()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid
    with caplog.at_level(logging.WARNING, "alignkit"), run_lock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"taking over the lock of a run that is no longer running (PID {holder.pid} on" in caplog.text
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released cleanly: nothing to take over next time
    caplog.clear()
    with caplog.at_level(logging.WARNING, "alignkit"), run_lock(tmp_path):
        pass
    assert caplog.text == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_one_line_naming_the_file(tmp_path):
    full = tmp_path / "trainer_state.pt"
    full.symlink_to("/dev/full")  # every write to it fails with ENOSPC, as on a full disk
    message = rf"^cannot write checkpoint {full}: No space left on device$"
    with pytest.raises(AlignkitError, match=message), writing(full, "checkpoint"):
        save_torch({"w": torch.zeros(4096)}, full)


def test_read_only_and_forbidden_folders_are_named(tmp_path):
    for code in (errno.EROFS, errno.EACCES):
        message = rf"^cannot write metrics {tmp_path}/m.jsonl: {os.strerror(code)}$"
        with pytest.raises(AlignkitError, match=message), writing(tmp_path / "m.jsonl", "metrics"):
            raise OSError(code, os.strerror(code))
    with pytest.raises(ValueError), writing(tmp_path, "x"):  # a bug keeps its traceback
        raise ValueError("not a disk error")


def test_a_torn_last_metrics_line_is_dropped(tmp_path, caplog):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.9}\n{"step": 3, "lo')
    with caplog.at_level(logging.WARNING, "alignkit"):
        assert read_metrics(tmp_path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.9}]
    assert "metrics.jsonl:3: dropped a last line that was cut short" in caplog.text
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "lo\n{"step": 2, "loss": 1.9}\n')
    with pytest.raises(AlignkitError, match=r"metrics.jsonl:1: not a JSON line"):
        read_metrics(tmp_path)
