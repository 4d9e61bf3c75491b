"""Config parsing: dotted flags, YAML, list values, suggestions for unknown keys, value checks."""

import pytest

from alignkit.config.parse import build_parser, parse_config
from alignkit.config.schema import RMConfig, SFTConfig
from alignkit.config.validate import validate_run
from alignkit.errors import ConfigError

BASE = ["--model.path", "m", "--data.train_files", "a.jsonl"]


def test_contract_flags_parse():
    cfg = parse_config(SFTConfig, [
        "--model.path", "m", "--data.train_files", "a.jsonl", "b.parquet", "--data.eval_files", "e.jsonl",
        "--output_dir", "out", "--seed", "7", "--train.max_steps", "5", "--train.batch_size", "8",
        "--train.micro_batch_size", "2", "--train.lr", "1e-4", "--data.max_length", "128",
        "--checkpoint.save_steps", "2", "--checkpoint.keep", "3", "--resume", "--model.lora.rank", "4",
        "--logging.tensorboard", "true",
    ], "alignkit sft")
    assert cfg.data.train_files == ["a.jsonl", "b.parquet"] and cfg.data.eval_files == ["e.jsonl"]
    assert (cfg.output_dir, cfg.seed, cfg.train.max_steps, cfg.train.batch_size) == ("out", 7, 5, 8)
    assert (cfg.train.micro_batch_size, cfg.train.lr, cfg.data.max_length) == (2, 1e-4, 128)
    assert (cfg.checkpoint.save_steps, cfg.checkpoint.keep, cfg.resume) == (2, 3, "latest")
    assert cfg.model.lora.rank == 4 and cfg.logging.tensorboard is True


def test_unknown_flag_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"^unknown option '--train.lrr'; did you mean '--train.lr'\? \(see --help\)$"):
        parse_config(SFTConfig, BASE + ["--train.lrr", "1"], "alignkit sft")


def test_unknown_yaml_key_names_file_and_suggests(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  max_stpes: 3\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key 'train.max_stpes'; did you mean 'train.max_steps'\?$"):
        parse_config(SFTConfig, ["--config", str(f)], "alignkit sft")


def test_yaml_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  path: m\ntrain:\n  lr: 0.1\n  max_steps: 3\nrm:\n  loss: logexp\n")
    cfg = parse_config(RMConfig, ["--config", str(f), "--train.lr", "0.5"], "alignkit rm")
    assert (cfg.model.path, cfg.train.lr, cfg.train.max_steps, cfg.rm.loss) == ("m", 0.5, 3, "logexp")


def test_dict_fields_from_a_flag_and_a_yaml_mapping(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data:\n  chat_template_kwargs:\n    enable_thinking: false\n")
    assert parse_config(SFTConfig, ["--config", str(f)], "alignkit sft").data.chat_template_kwargs == {
        "enable_thinking": False}
    flag = ["--config", str(f), "--data.chat_template_kwargs", '{"enable_thinking": true, "x": 1}']
    assert parse_config(SFTConfig, flag, "alignkit sft").data.chat_template_kwargs == {"enable_thinking": True, "x": 1}


def test_wrong_type_is_a_config_error():
    with pytest.raises(ConfigError, match=r'Parser key "train.lr": Expected a <class .float.>. Got value: abc'):
        parse_config(SFTConfig, BASE + ["--train.lr", "abc"], "alignkit sft")


def test_config_is_frozen():
    cfg = parse_config(SFTConfig, BASE, "alignkit sft")
    with pytest.raises(AttributeError):
        cfg.seed = 1


def test_help_shows_field_docs():
    text = build_parser(SFTConfig, "alignkit sft").format_help()
    assert "--train.micro_batch_size" in text
    assert "Samples per forward/backward" in text


@pytest.mark.parametrize(("argv", "message"), [
    (["--data.train_files", "a"], "--model.path is required: a local Hugging Face model folder"),
    (["--model.path", "m"], "--data.train_files is required: one or more data files"),
    (BASE + ["--train.batch_size", "6", "--train.micro_batch_size", "4"],
     "--train.batch_size (6) must be a multiple of --train.micro_batch_size (4)"),
    (BASE + ["--model.dtype", "fp8"], "--model.dtype must be one of float32, bfloat16, float16, got 'fp8'"),
    (BASE + ["--train.micro_batch_tokens", "-1"],
     "--train.micro_batch_tokens must be at least 0 (0: --train.micro_batch_size samples), got -1"),
    (BASE + ["--model.logprob_chunk_tokens", "-5"],
     "--model.logprob_chunk_tokens must be at least 0 (0: all logits at once), got -5"),
])
def test_value_checks(argv, message):
    with pytest.raises(ConfigError) as e:
        validate_run(parse_config(SFTConfig, argv, "alignkit sft"))
    assert str(e.value) == message


def test_a_token_budget_frees_batch_size_from_micro_batch_size():
    # micro_batch_tokens forms the micro-batches, so batch_size need not be a multiple of micro_batch_size
    argv = BASE + ["--train.batch_size", "6", "--train.micro_batch_size", "4", "--train.micro_batch_tokens", "256"]
    validate_run(parse_config(SFTConfig, argv, "alignkit sft"))
