"""Bad input through the CLI: exit code 2 and one clear line, never a traceback."""

from helpers import common_flags, run_cli, synth


def err_line(capsys):
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_model_folder_that_is_not_hf(tmp_path, capsys):
    data = synth(tmp_path / "d.jsonl", n=16)
    (tmp_path / "empty").mkdir()
    assert run_cli("sft", *common_flags(tmp_path / "empty", data, tmp_path / "o", 1)) == 2
    assert err_line(capsys) == (
        f"alignkit sft: error: {tmp_path}/empty is not a Hugging Face model folder (no config.json); "
        "run `alignkit init-tiny` for a test model"
    )


def test_malformed_json_names_file_and_line(tmp_path, tiny_dir, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a" "response": "b"}\n')
    assert run_cli("sft", *common_flags(tiny_dir, data, tmp_path / "o", 1)) == 2
    assert err_line(capsys).startswith(f"alignkit sft: error: {data}:2: malformed JSON")


def test_unknown_command_and_option(capsys, tiny_dir, tmp_path):
    assert run_cli("stf") == 2
    assert "unknown command 'stf'; did you mean 'sft'?" in capsys.readouterr().err
    assert run_cli("rm", "--rm.los", "x") == 2
    assert err_line(capsys) == "alignkit rm: error: unknown option '--rm.los'; did you mean '--rm.loss'? (see --help)"


def test_too_few_samples(tmp_path, tiny_dir, capsys):
    data = synth(tmp_path / "d.jsonl", n=4)
    assert run_cli("sft", *common_flags(tiny_dir, data, tmp_path / "o", 1)) == 2
    assert err_line(capsys) == "alignkit sft: error: 4 training samples are fewer than --train.batch_size 16"


def test_synth_command(tmp_path, capsys):
    out = tmp_path / "x.jsonl"
    assert run_cli("data", "synth", "--task", "sort", "--kind", "pair", "--n", 5, "--output", out) == 0
    assert len(out.read_text().splitlines()) == 5
    assert run_cli("data", "synth", "--task", "nope", "--output", out) == 2
