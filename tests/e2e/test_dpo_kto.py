"""`alignkit dpo` and `alignkit kto` end to end: SFT first, then preference training on synthetic sort
pairs whose chosen side is the correct answer."""

import math

import pytest
import torch
from helpers import interrupt_on_call, run_cli, synth

from alignkit.config.schema import ModelConfig
from alignkit.data.synth import is_correct, make_records
from alignkit.metrics.logger import read_metrics
from alignkit.models.load import load_causal_lm, load_tokenizer
from alignkit.rollout.greedy import greedy_complete

FLAGS = ["--train.batch_size", 16, "--train.micro_batch_size", 8, "--data.max_length", 48, "--logging.progress", "false"]
HELD_OUT = make_records("sort", "prompt", 100, seed=2)


def task_accuracy(model_dir) -> float:
    cfg = ModelConfig(path=str(model_dir))
    outs = greedy_complete(load_causal_lm(cfg, torch.device("cpu")), load_tokenizer(cfg), [r["prompt"] for r in HELD_OUT], 12)
    return sum(is_correct("sort", r["label"], o) for r, o in zip(HELD_OUT, outs, strict=True)) / len(HELD_OUT)


@pytest.fixture(scope="module")
def sft_model(tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("pref")
    data = synth(root / "sft.jsonl", task="sort", n=1024)
    out = root / "sft"
    assert run_cli("sft", "--model.path", tiny_dir, "--data.train_files", data, "--output_dir", out,
                   "--train.max_steps", 500, "--train.lr", 3e-3, *FLAGS) == 0
    return out / "final"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return synth(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", task="sort", kind="pair", n=512, seed=1)


def test_dpo_learns_preferences_without_losing_the_task(sft_model, pairs, tmp_path):
    out = tmp_path / "dpo"
    assert run_cli("dpo", "--loss", "dpo", "--model.path", sft_model, "--data.train_files", pairs, "--output_dir", out,
                   "--train.max_steps", 40, "--train.lr", 3e-5, "--data.eval_fraction", 0.125, *FLAGS) == 0
    rows = read_metrics(out)
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at step 1
    for key in ("reward_acc", "chosen_reward", "rejected_reward", "margin", "chosen_logp", "rejected_logp"):
        assert key in rows[-1]
    assert rows[-1]["eval_reward_acc"] > 0.7
    before, after = task_accuracy(sft_model), task_accuracy(out / "final")
    assert before > 0.3 and after >= before - 0.05, (before, after)


def test_precomputed_reference_gives_the_same_losses(sft_model, pairs, tmp_path):
    args = ["--model.path", sft_model, "--data.train_files", pairs, "--train.max_steps", 3, "--train.lr", 1e-4, *FLAGS]
    assert run_cli("dpo", *args, "--output_dir", tmp_path / "live") == 0
    assert run_cli("dpo", *args, "--output_dir", tmp_path / "pre", "--ref.precompute", "true") == 0
    live, pre = read_metrics(tmp_path / "live"), read_metrics(tmp_path / "pre")
    assert live[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at step 1
    assert [r["loss"] for r in pre] == pytest.approx([r["loss"] for r in live], abs=1e-5)


def test_lora_reference_is_the_base_with_adapter_disabled(sft_model, pairs, tmp_path):
    out = tmp_path / "lora"
    assert run_cli("dpo", "--model.path", sft_model, "--data.train_files", pairs, "--output_dir", out,
                   "--train.max_steps", 3, "--train.lr", 1e-3, "--model.lora.rank", 8, *FLAGS) == 0
    rows = read_metrics(out)
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert rows[-1]["chosen_reward"] != 0.0  # the adapter moved the policy away from the reference


@pytest.mark.parametrize("loss", ["cdpo", "ipo", "simpo", "orpo", "rpo"])
def test_every_loss_trains(sft_model, pairs, tmp_path, loss):
    out = tmp_path / loss
    assert run_cli("dpo", "--loss", loss, "--model.path", sft_model, "--data.train_files", pairs, "--output_dir", out,
                   "--train.max_steps", 12, "--train.lr", 3e-4, *FLAGS) == 0
    rows = read_metrics(out)
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert sum(r["reward_acc"] for r in rows[-4:]) / 4 > 0.5


def test_dpo_resume_is_exact(sft_model, pairs, tmp_path, monkeypatch):
    from alignkit.backends.torch_local import TorchBackend

    args = ["--model.path", sft_model, "--data.train_files", pairs, "--train.max_steps", 6, "--train.lr", 1e-4,
            "--checkpoint.save_steps", 3, *FLAGS]
    assert run_cli("dpo", *args, "--output_dir", tmp_path / "full") == 0
    with monkeypatch.context() as m:
        interrupt_on_call(m, TorchBackend, "step", 5)
        assert run_cli("dpo", *args, "--output_dir", tmp_path / "cut") == 130
    assert run_cli("dpo", *args, "--output_dir", tmp_path / "cut", "--resume") == 0
    a, b = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "cut")
    assert [r["loss"] for r in a] == [r["loss"] for r in b] and len(b) == 6


def test_kto_learns(sft_model, tmp_path):
    data = synth(tmp_path / "unpaired.jsonl", task="sort", kind="unpaired", n=512, seed=3)
    out = tmp_path / "kto"
    assert run_cli("kto", "--model.path", sft_model, "--data.train_files", data, "--output_dir", out,
                   "--train.max_steps", 40, "--train.lr", 1e-4, *FLAGS) == 0
    rows = read_metrics(out)
    assert rows[0]["loss"] == pytest.approx(0.5, abs=1e-4)  # r = z0 = 0: each sample loses lambda - lambda/2
    late = rows[-10:]
    assert sum(r["loss"] for r in late) / 10 < 0.499
    assert sum(r["chosen_reward"] - r["rejected_reward"] for r in late) / 10 > 0.02  # desirable pulled above undesirable
    assert task_accuracy(out / "final") >= task_accuracy(sft_model) - 0.05


def test_kto_label_must_be_boolean(sft_model, tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    rows = [{"prompt": "sort: 2 1 =", "completion": "1 2", "label": True}] * 20 + \
           [{"prompt": "sort: 2 1 =", "completion": "2 1", "label": "no"}]
    import json

    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_cli("kto", "--model.path", sft_model, "--data.train_files", data, "--output_dir", tmp_path / "o",
                   "--train.max_steps", 1, *FLAGS) == 2
    assert capsys.readouterr().err.strip().endswith(f"{data}:21: field 'label' must be true or false, got str")


def test_unknown_loss(sft_model, pairs, tmp_path, capsys):
    assert run_cli("dpo", "--loss", "dpoo", "--model.path", sft_model, "--data.train_files", pairs,
                   "--output_dir", tmp_path / "o", *FLAGS) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--loss must be one of dpo, cdpo, rpo, ipo, simpo, orpo, got 'dpoo'")
