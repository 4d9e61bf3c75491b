"""`alignkit plan --calibration FILE --report`: real `alignkit rl` runs of tiny models, measured
and predicted, in one table with the rank correlation (two runs of two steps here)."""

from __future__ import annotations

import re

import pytest

from alignkit.metrics.logger import read_metrics
from alignkit.planner import calibration_runs
from alignkit.planner.calibration_runs import TinyRun
from alignkit.planner.command import main as plan_main
from alignkit.planner.efficiency import Efficiency, save_efficiency


def test_report_runs_predicts_and_measures(tmp_path, monkeypatch, capsys):
    runs = (TinyRun("grpo-tiny", "grpo", 32, 1, 2, 2, 4), TinyRun("ppo-tiny", "ppo", 64, 2, 2, 2, 8))
    monkeypatch.setattr(calibration_runs, "DEFAULT_RUNS", runs)
    calib = tmp_path / "calib.json"
    save_efficiency(Efficiency(compute=0.05, attention=0.02, memory=0.1, overhead_s=2e-3, device="cpu"), calib)
    work = tmp_path / "report"
    argv = ["--calibration", str(calib), "--report", "--report-steps", "2", "--report-dir", str(work)]
    assert plan_main(argv) == 0
    out = capsys.readouterr().out
    assert "2 runs of 2 steps, median of steps 2-2" in out
    for run in runs:
        row = re.search(rf"^{run.name}\s+{re.escape(run.detail)}\s+(\S+)\s+(\S+)\s+([+-]\S+)$", out, re.M)
        assert row, out
        predicted, measured, error = map(float, row.groups())
        assert measured == pytest.approx(read_metrics(work / run.name)[1]["step_time_s"], abs=5e-5)
        assert predicted > 0 and error == pytest.approx(100 * (predicted - measured) / measured, abs=1.0)
    assert re.search(r"^Spearman rank correlation \(predicted vs measured, 2 runs\): -?1\.000$", out, re.M), out
    assert (work / "ppo-tiny" / "metrics.jsonl").exists() and (work / "tiny-h32x1" / "config.json").exists()
