"""The CUDA-capable tests: tests/gpu, and the tests of TEST_FILES that take the `device` fixture, run
with `pytest --device cuda` (the same tests run on the CPU in every CI run). A test file whose tests take
`device` belongs in TEST_FILES."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

from partlib import REPO, Args, child_env, part_main

TEST_FILES = (
    "tests/gpu",
    "tests/component/test_hf_engine.py",
    "tests/component/test_fsdp2_backend.py",
    "tests/unit/core/test_packing.py",
)


def run(a: Args) -> dict:
    junit = a.work / "tests_junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--device", a.device,
           "-m", "gpu or on_device", f"--junitxml={junit}", *TEST_FILES]
    if a.setting.tests_k:
        cmd += ["-k", a.setting.tests_k]
    done = subprocess.run(cmd, cwd=REPO, env=child_env())
    if not junit.exists():
        raise SystemExit(f"pytest wrote no report (exit {done.returncode})")
    figures = outcomes(junit)
    bad = figures["failed"] + figures["errors"]
    if done.returncode not in (0, 1) or not figures["passed"] + bad:
        raise SystemExit(f"pytest exit {done.returncode} after {figures}")
    summary = ", ".join(f"{figures[k]} {k}" for k in ("passed", "failed", "errors", "skipped") if figures[k])
    return {"figures": figures, "summary": summary} | ({"status": "failed", "reason": summary} if bad else {})


def outcomes(junit) -> dict:
    """Counts of a JUnit XML report, and each failure's test and first line of message."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "problems": {}}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kind = next((k for k in ("failure", "error", "skipped") if case.find(k) is not None), None)
        key = {"failure": "failed", "error": "errors", "skipped": "skipped", None: "passed"}[kind]
        counts[key] += 1
        if kind in ("failure", "error"):
            counts["problems"][name] = ((case.find(kind).get("message") or "").splitlines() or [""])[0]
    return counts


if __name__ == "__main__":
    part_main(run)
