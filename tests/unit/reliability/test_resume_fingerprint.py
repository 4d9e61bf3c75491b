"""Honest resume: another command's checkpoint or a changed training field is refused, field by field;
--resume_allow lets named fields change; operational fields never count."""

import dataclasses
import logging

import pytest

from alignkit.checkpoint.fingerprint import allowed, check_resume, flat_values, run_record
from alignkit.config.parse import parse_config
from alignkit.config.rl import RLConfig
from alignkit.config.schema import DPOConfig, SFTConfig
from alignkit.errors import ConfigError

BASE = ["--model.path", "m", "--data.train_files", "a.jsonl", "--train.lr", "3e-3", "--train.max_steps", "8"]


def sft(*flags):
    return parse_config(SFTConfig, BASE + list(flags), "alignkit sft")


def test_same_config_and_operational_changes_resume():
    record = run_record(sft())
    check_resume(sft("--resume"), "ck", record)
    moved = sft("--resume", "--output_dir", "elsewhere", "--train.micro_batch_size", "2", "--policy.backend",
                "fsdp2", "--logging.log_steps", "5", "--checkpoint.save_steps", "3", "--data.packing", "false")
    check_resume(moved, "ck", record)


def test_changed_fields_are_listed_old_to_new():
    record = run_record(sft())
    changed = sft("--resume", "--train.lr", "1e-3", "--seed", "7", "--train.batch_size", "32")
    message = (
        "--resume: ck was written with other values of fields that change what is trained:\n"
        "  seed: 42 -> 7\n  train.batch_size: 16 -> 32\n  train.lr: 0.003 -> 0.001\n"
        "resume with the checkpoint's values, allow the changes with --resume_allow seed,train.batch_size,train.lr, "
        "or start a new --output_dir")
    with pytest.raises(ConfigError) as e:
        check_resume(changed, "ck", record)
    assert str(e.value) == message


def test_allowed_changes_are_logged(caplog):
    record = run_record(sft())
    cfg = sft("--resume", "--train.lr", "1e-3", "--train.max_steps", "12", "--resume_allow", "lr,max_steps")
    with caplog.at_level(logging.WARNING, "alignkit"):
        check_resume(cfg, "ck", record)
    assert "resuming with train.lr changed: 0.003 -> 0.001 (allowed by --resume_allow)" in caplog.text
    assert "resuming with train.max_steps changed: 8 -> 12 (allowed by --resume_allow)" in caplog.text
    with pytest.raises(ConfigError, match=r"^--resume: .*\n  train.lr: 0.003 -> 0.001\n.*--resume_allow train.lr,"):
        check_resume(dataclasses.replace(cfg, resume_allow="max_steps"), "ck", record)


def test_another_commands_checkpoint_is_refused():
    record = run_record(sft())
    dpo = parse_config(DPOConfig, BASE + ["--resume"], "alignkit dpo")
    with pytest.raises(ConfigError, match=r"^--resume: ck was written by `alignkit sft`, and this is `alignkit dpo`: "
                                          r"a checkpoint resumes only the command that wrote it"):
        check_resume(dpo, "ck", record)


def test_allow_names_and_fixed_fields():
    keys = sorted(flat_values(parse_config(RLConfig, BASE, "alignkit rl")))
    assert allowed("lr", keys) == {"train.lr", "critic.lr"}  # a bare name is every field of that name
    assert allowed("train.lr, reward", keys) >= {"train.lr", "reward.function", "reward.rules", "reward.weights"}
    assert "model.lora.rank" not in allowed("model", keys)  # a section never allows a fixed field
    with pytest.raises(ConfigError, match=r"^--resume_allow: 'max_step' names no config field; did you mean 'max_steps'\?$"):
        allowed("max_step", keys)
    with pytest.raises(ConfigError, match=r"^--resume_allow: model.lora.rank cannot change on resume: the saved adapter"):
        allowed("model.lora.rank", keys)
    record = run_record(sft("--model.lora.rank", "4"))
    with pytest.raises(ConfigError, match=r"^--resume: model.lora.rank cannot change on resume \(4 -> 8\)"):
        check_resume(sft("--resume", "--model.lora.rank", "8", "--resume_allow", "model"), "ck", record)


def test_fields_the_checkpoint_does_not_record_are_not_compared():
    record = run_record(sft())
    del record["config"]["train.weight_decay"]  # a field added to alignkit after the checkpoint was written
    check_resume(sft("--resume", "--train.weight_decay", "0.1"), "ck", record)
