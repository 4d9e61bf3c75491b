"""Whole commands meeting a changed config on resume, another command's run directory, a full disk, and
data that a rule reward cannot score: each stops at once with one line, and nothing is overwritten."""

import json
import os

import pytest
import yaml
from helpers import common_flags, rl_flags, run_cli, synth

from alignkit.metrics.logger import read_metrics


def test_resume_is_honest_about_the_config(tmp_path, tiny_dir, capsys):
    data = synth(tmp_path / "sft.jsonl", n=128)
    out = tmp_path / "run"
    flags = common_flags(tiny_dir, data, out, 4, **{"checkpoint.save_steps": 2, "train.lr": 3e-3})
    assert run_cli("sft", *flags) == 0
    first = read_metrics(out)
    config, final = (out / "config.yaml").read_text(), (out / "final" / "model.safetensors").stat().st_mtime_ns

    assert run_cli("sft", *flags, "--train.lr", 1e-3, "--seed", 1, "--resume") == 2
    err = capsys.readouterr().err
    assert (f"alignkit sft: error: --resume: {out}/checkpoints/step_2 was written with other values of fields that "
            "change what is trained:\n  seed: 42 -> 1\n  train.lr: 0.003 -> 0.001\nresume with the checkpoint's "
            "values, allow the changes with --resume_allow seed,train.lr, or start a new --output_dir") in err
    assert run_cli("dpo", *flags, "--resume") == 2
    assert (f"alignkit dpo: error: --resume: {out}/checkpoints/step_2 was written by `alignkit sft`, and this is "
            "`alignkit dpo`: a checkpoint resumes only the command that wrote it") in capsys.readouterr().err
    assert (out / "config.yaml").read_text() == config  # no claim of a value that was not used
    assert (out / "final" / "model.safetensors").stat().st_mtime_ns == final

    # Allowed by name, the new learning rate is the one used from the first resumed step. A torn last
    # metrics line (a crash mid-write) and an unfinished save of a crash are cleaned up on the way.
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "lo')
    (out / "checkpoints" / ".step_4.tmp-99999").mkdir()
    assert run_cli("sft", *flags, "--train.lr", 1e-3, "--resume", "--resume_allow", "lr") == 0
    resumed = read_metrics(out)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert resumed[2]["lr"] == pytest.approx(first[2]["lr"] / 3, rel=1e-12)
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["lr"] == 1e-3
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_2"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_stops_the_run_with_one_line(tmp_path, tiny_dir, capsys):
    data = synth(tmp_path / "sft.jsonl", n=64)
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").symlink_to("/dev/full")  # writes fail with ENOSPC, as on a full disk
    assert run_cli("sft", *common_flags(tiny_dir, data, out, 2)) == 2
    err = capsys.readouterr().err
    assert f"alignkit sft: error: cannot write metrics {out}/metrics.jsonl: No space left on device\n" in err
    assert "Traceback" not in err


def test_a_rule_reward_without_labels_fails_before_any_model_loads(tmp_path, tiny_dir, capsys):
    prompts = tmp_path / "unlabelled.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in [{"prompt": "1+1=", "label": "2"}, {"prompt": "2+2="}]))
    flags = rl_flags(tiny_dir, tmp_path, 2)
    flags[flags.index("--data.train_files") + 1] = prompts
    assert run_cli("rl", "--preset", "grpo", *flags, "--reward.rules", "exact") == 2
    assert (f"alignkit rl: error: {prompts}:2: missing field 'label': --reward.rules exact compare each response with "
            "the prompt's reference answer") in capsys.readouterr().err


def test_an_output_dir_that_cannot_be_made_is_one_line(tmp_path, tiny_dir, capsys):
    data = synth(tmp_path / "sft.jsonl", n=32)
    (tmp_path / "a_file").write_text("")
    assert run_cli("sft", *common_flags(tiny_dir, data, tmp_path / "a_file" / "run", 2)) == 2
    err = capsys.readouterr().err
    assert f"alignkit sft: error: cannot write the run lock {tmp_path}/a_file/run" in err and "Not a directory" in err
