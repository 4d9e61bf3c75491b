"""`alignkit plan` in-process: the table, plan.json, errors, calibration."""

from __future__ import annotations

import json

import pytest

from alignkit.errors import ConfigError
from alignkit.orchestration.plan_file import load_plan
from alignkit.planner.command import main
from alignkit.planner.efficiency import load_efficiency

EXAMPLE = (
    "--actor 7b --critic 7b --ref 7b --reward 7b --algo ppo --devices 8x8 --device h100 "
    "--batch 512 --prompt-len 1024 --gen-len 1024"
)


def test_plan_prints_the_table_and_writes_plan_json(tmp_path, capsys):
    out_file = tmp_path / "plan.json"
    assert main([*EXAMPLE.split(), "--output", str(out_file)]) == 0
    out = capsys.readouterr().out
    for text in ("Chosen plan", "rollout.generate", "policy.train", "critic.train", "critical path:",
                 "estimated seconds per iteration:", "colocated", "separate", "split-generation",
                 "plan speed-up", "dp", "mem GiB/dev"):  # fmt: skip
        assert text in out, text
    plan = load_plan(out_file)
    assert plan["cluster"]["nodes"] == 8 and plan["cluster"]["device"] == "h100"
    assert set(plan["roles"]) == {"policy", "critic", "reference", "reward", "rollout"}
    assert plan["roles"]["policy"]["model"] == "7b"
    secs = float(out.split("estimated seconds per iteration:")[1].split()[0])
    assert secs == pytest.approx(plan["estimate"]["seconds_per_iteration"], abs=0.01)


def test_grpo_without_reward_model_or_reference(capsys):
    assert main(["--algo", "grpo", "--actor", "1b", "--reward", "none", "--ref", "none", "--devices", "1x4", "--batch", "32", "--prompt-len", "128", "--gen-len", "128", "--steps", "50"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "GRPO" in out and "32 prompts x 8 sample(s)" in out
    assert "critic." not in out
    assert "reward.score" not in out


def test_help_explains_the_flags(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--actor", "--critic", "--ref", "--reward", "--algo", "--devices", "--device-table",
                 "--batch", "--prompt-len", "--gen-len", "--output", "--calibrate", "--calibration", "--seed"):  # fmt: skip
        assert flag in out


def test_argparse_rejections_return_an_exit_code(capsys):
    assert main(["--algo", "sft"]) == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        ("--devices 8y8", r"bad --devices '8y8'"),
        ("--actor 9b", r"unknown model '9b'"),
        ("--device tpu", r"unknown device kind 'tpu'.*valid choices"),
        ("--critic none", "needs a critic"),
        ("--calibration /nonexistent.json", "does not exist"),
        ("--report", r"--report compares the calibrated cost model with real runs: give --calibrate"),
        ("--actor 70b --devices 1x1 --device a100-40g", "no feasible way to run"),
    ],
)
def test_user_errors_are_config_errors(argv, message):
    with pytest.raises(ConfigError, match=message):
        main(argv.split())


def test_device_table_missing_field(tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text("x1:\n  peak_tflops: 100\n")
    with pytest.raises(ConfigError, match="missing field"):
        main(["--device-table", str(f), "--device", "x1"])


def test_calibrate_then_plan_with_it(tmp_path, capsys):
    calib = tmp_path / "calib.json"
    argv = [
        "--calibrate",
        str(calib),
        "--device",
        "cpu",
        "--calibrate-size",
        "tiny",
        "--calibrate-threads",
        "1",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "calibrated cpu" in out and "tiny llama decode step" in out
    data = json.loads(calib.read_text())
    assert data["version"] == 1 and len(data["measurements"]) == 6
    eff = load_efficiency(calib)
    assert eff.device == "cpu" and 0 < eff.compute <= 1.5
    assert main(["--calibration", str(calib), "--actor", "125m", "--devices", "1x2", "--device", "cpu",
                 "--batch", "8", "--prompt-len", "32", "--gen-len", "32", "--steps", "30"]) == 0  # fmt: skip
    assert "calibrated on" in capsys.readouterr().out
