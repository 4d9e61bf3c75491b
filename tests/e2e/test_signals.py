"""SIGTERM and SIGINT on real `alignkit` processes: a checkpoint at the next step boundary and exit 143 or
130 with a message; a second signal exits at once; one run per output directory."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import common_flags, rl_flags, run_cli, stalling_reward, synth

import alignkit
from alignkit.checkpoint.manifest import verify
from alignkit.checkpoint.state import list_checkpoints
from alignkit.metrics.logger import read_metrics

SRC = str(Path(alignkit.__file__).parents[1])  # this tree's sources, for the child process


def spawn(*args) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "alignkit.cli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early ({proc.returncode}): {proc.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, "the run did not get there in time"
        time.sleep(0.05)


def logged_steps(out: Path) -> int:
    path = out / "metrics.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def test_sigterm_saves_a_checkpoint_exits_143_and_the_run_continues(tmp_path, tiny_dir, capsys):
    data = synth(tmp_path / "sft.jsonl", n=256)
    out = tmp_path / "run"
    proc = spawn("sft", *common_flags(tiny_dir, data, out, 5000))
    wait_for(lambda: logged_steps(out) >= 2, proc)
    # A second run into the same directory is refused, naming the first one's process.
    assert run_cli("sft", *common_flags(tiny_dir, data, out, 5000)) == 2
    assert f"{out} is in use by another run (PID {proc.pid} on " in capsys.readouterr().err
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    last = read_metrics(out)[-1]["step"]  # the step that was running finished, was logged and saved
    ckpt = out / "checkpoints" / f"step_{last}"
    assert "alignkit: SIGTERM received: stopping after the current step, with a checkpoint" in err
    assert f"alignkit sft: stopped by SIGTERM: checkpoint {ckpt} written; continue with the same command and --resume" in err
    assert list_checkpoints(out / "checkpoints") == [ckpt]
    verify(ckpt)
    # Continue, allowing the one change: a shorter run (max_steps is part of the schedule, so it must be named).
    assert run_cli("sft", *common_flags(tiny_dir, data, out, last + 2), "--resume", "--resume_allow", "max_steps") == 0
    assert [r["step"] for r in read_metrics(out)] == list(range(1, last + 3))
    assert (out / "final" / "model.safetensors").is_file()


def test_a_second_sigint_exits_at_once(tmp_path, tiny_dir):
    fn = tmp_path / "stalls.py"
    proc = spawn("rl", "--preset", "grpo", *rl_flags(tiny_dir, tmp_path, 4), "--reward.function", stalling_reward(fn, 60))
    wait_for(fn.with_suffix(".stalling").exists, proc)
    proc.send_signal(signal.SIGINT)  # step 2 waits for its reward: the first signal only asks to stop after it
    time.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10  # not after the minute the reward stalls
    assert proc.returncode == 130, err
    assert "alignkit: SIGINT received: stopping after the current step, with a checkpoint (send SIGINT again" in err
    assert "alignkit: second SIGINT: exiting now without a checkpoint (the last whole one stays)" in err
    assert list_checkpoints(tmp_path / "rl" / "checkpoints") == []
