"""The GPU verification kit (bench/gpu, scripts/gpu_check.sh): its CPU dry run, every part on a tiny model,
so that the prepared GPU run cannot rot; and the driver's selection, time limits and failure isolation."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench" / "gpu"))

from check import PARTS, parse_args  # noqa: E402
from report import rerun_hint  # noqa: E402
from runner import Outcome, run_part  # noqa: E402


def test_dry_run_runs_every_part(tmp_path):
    env = os.environ | {"PYTHON": sys.executable, "OUT": str(tmp_path / "out"),
                        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run", "--work", str(tmp_path / "work")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    parts = json.loads((tmp_path / "out" / "gpu_check.json").read_text())["parts"]
    assert list(parts) == list(PARTS)
    assert {name: part["status"] for name, part in parts.items()} == dict.fromkeys(PARTS, "ok")
    f = {name: part["figures"] for name, part in parts.items()}
    assert f["tests"]["passed"] == 1 and f["tests"]["failed"] == f["tests"]["errors"] == 0
    assert f["model"]["vocab"] == 2048
    assert {r["mean_len"] for r in f["generate"].values() if isinstance(r, dict)} == {4.0}  # no EOS: full length
    grpo = f["grpo"]
    assert grpo["timed_steps"] == 1 and set(grpo["phases_s"]) >= {"generate", "logprobs", "train"}
    # fp32 on the CPU: the trainer's log-probs are the engine's up to rounding
    assert [m["logprob_mismatch/mean_abs"] < 1e-4 for m in grpo["logprob_mismatch"]] == [True, True]
    assert grpo["mfu_train"] > 0 and grpo["peak_mem_gib"] > 0
    for backend in ("fsdp2", "deepspeed"):
        assert len(f[backend]["losses"]) == 2 and f[backend]["exported"], backend
    assert f["logprob_memory"]["default_peak_gib"] > 0 and f["logprob_memory"]["off_peak_gib"] > 0
    assert "used" in done.stdout and "rerun" not in done.stdout


def test_only_adds_env_and_what_a_part_needs():
    assert parse_args(["--only", "grpo"]).parts == ["env", "model", "grpo"]
    assert parse_args(["--only", "deepspeed,tests"]).parts == ["env", "tests", "model", "deepspeed"]
    assert parse_args([]).parts == list(PARTS)


def test_unknown_part_is_named(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--only", "fsdp3"])
    assert "unknown part(s) fsdp3; choose from env, tests, model" in capsys.readouterr().err


def test_a_failing_part_reports_its_output(tmp_path):
    cmd = [sys.executable, "-c", "import sys; print('cuda is broken'); sys.exit(3)"]
    out = run_part("x", cmd, 30, tmp_path / "log", tmp_path / "x.json", dict(os.environ))
    assert (out.status, out.summary, out.reason) == ("failed", "exit 3", "cuda is broken")


def test_a_part_past_its_limit_is_stopped_with_its_children(tmp_path):
    # the child starts a grandchild (as torchrun starts workers); both must be gone after the limit
    script = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
              f" open({str(tmp_path / 'pid')!r}, 'w').write(str(p.pid)); print('started', flush=True); time.sleep(60)")
    out = run_part("x", [sys.executable, "-c", script], 6, tmp_path / "log", tmp_path / "x.json", dict(os.environ))
    assert out.status == "timeout" and out.seconds < 20 and out.reason == "started"
    # SIGKILL is delivered asynchronously: give the kernel a moment (a loaded CI machine) to end it
    grandchild, deadline = int((tmp_path / "pid").read_text()), time.monotonic() + 10
    while running(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(grandchild)


def running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (killed, its exit status not yet collected)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_part_result_gives_status_and_figures(tmp_path):
    result = tmp_path / "x.json"
    script = f"import json; open({str(result)!r}, 'w').write(json.dumps({{'status': 'skipped', 'summary': 's', 'figures': {{'a': 1}}}}))"
    out = run_part("x", [sys.executable, "-c", script], 30, tmp_path / "log", result, dict(os.environ))
    assert (out.status, out.summary, out.figures) == ("skipped", "s", {"a": 1})


def test_rerun_names_what_failed_and_what_it_held_back():
    outcomes = {"env": Outcome("ok"), "model": Outcome("timeout"), "grpo": Outcome("skipped", reason="needs model"),
                "logprob_memory": Outcome("skipped", reason="budget: 12 s left"),
                "deepspeed": Outcome("skipped", reason="DeepSpeed is not installed")}
    assert rerun_hint(outcomes) == "rerun what failed: scripts/gpu_check.sh --only model,grpo,logprob_memory"
    assert rerun_hint({"env": Outcome("ok")}) == ""

