"""`alignkit sft` end to end on a tiny model: loss falls, the run directory is complete, final/ loads."""

import json

import pytest
import torch
from helpers import common_flags, interrupt_on_call, run_cli, synth
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignkit.backends.torch_local import TorchBackend
from alignkit.metrics.logger import read_metrics


def test_sft_loss_falls_and_run_dir_is_complete(tmp_path, tiny_dir):
    data = synth(tmp_path / "sft.jsonl", n=512)
    out = tmp_path / "run"
    flags = common_flags(tiny_dir, data, out, 40, **{"train.lr": 3e-3, "data.eval_fraction": 0.1,
                                                     "train.eval_steps": 20, "checkpoint.save_steps": 10,
                                                     "checkpoint.keep": 2, "logging.tensorboard": "true"})
    assert run_cli("sft", *flags) == 0
    rows = read_metrics(out)
    losses = [r["loss"] for r in rows]
    assert len(rows) == 40 and rows[-1]["step"] == 40
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    for key in ("step", "loss", "lr", "tokens_per_s", "elapsed_s", "grad_norm"):
        assert key in rows[-1]
    evals = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in evals] == [20, 40] and evals[1]["eval_loss"] < evals[0]["eval_loss"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_20", "step_30"]  # keep 2
    assert list((out / "tensorboard").iterdir())
    assert "train_files" in (out / "config.yaml").read_text()
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    tok = AutoTokenizer.from_pretrained(out / "final")
    gen = model.generate(torch.tensor([tok("12+35=")["input_ids"]]), max_new_tokens=4, do_sample=False)
    assert gen.shape[1] > 6


def test_token_budget_micro_batches_train(tmp_path, tiny_dir):
    # micro-batches of at most 40 tokens (samples of 7-9 tokens: 4-5 each) instead of 8 samples; the
    # step's loss is divided by the same token count, so the first step's loss is the fixed micro-batches'
    data = synth(tmp_path / "sft.jsonl", n=512)
    flags = {"train.lr": 3e-3, "train.micro_batch_tokens": 40}
    assert run_cli("sft", *common_flags(tiny_dir, data, tmp_path / "tokens", 20, **flags)) == 0
    assert run_cli("sft", *common_flags(tiny_dir, data, tmp_path / "fixed", 1, **{"train.lr": 3e-3})) == 0
    rows, fixed = read_metrics(tmp_path / "tokens"), read_metrics(tmp_path / "fixed")
    losses = [r["loss"] for r in rows]
    assert losses[0] == pytest.approx(fixed[0]["loss"], abs=1e-6) and rows[0]["tokens"] == fixed[0]["tokens"]
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, losses


def test_resume_is_exact(tmp_path, tiny_dir, monkeypatch):
    data = synth(tmp_path / "sft.jsonl", n=256)
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    flags = ["--train.lr", 3e-3, "--checkpoint.save_steps", 4, "--train.warmup_ratio", 0.25]
    assert run_cli("sft", *common_flags(tiny_dir, data, full, 8), *flags) == 0
    # The same run interrupted (Ctrl-C) during step 7: steps 5-6 were logged, step_4 is the last checkpoint.
    with monkeypatch.context() as m:
        interrupt_on_call(m, TorchBackend, "step", 7)
        assert run_cli("sft", *common_flags(tiny_dir, data, resumed, 8), *flags) == 130
    assert [r["step"] for r in read_metrics(resumed)] == list(range(1, 7))
    torch.manual_seed(1234)  # a different global RNG state must not matter
    assert run_cli("sft", *common_flags(tiny_dir, data, resumed, 8), *flags, "--resume") == 0
    a, b = read_metrics(full), read_metrics(resumed)
    assert [r["step"] for r in b] == list(range(1, 9))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    wa = AutoModelForCausalLM.from_pretrained(full / "final").state_dict()
    wb = AutoModelForCausalLM.from_pretrained(resumed / "final").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_latest_picks_newest_checkpoint(tmp_path, tiny_dir):
    data = synth(tmp_path / "sft.jsonl", n=128)
    out = tmp_path / "run"
    assert run_cli("sft", *common_flags(tiny_dir, data, out, 6, **{"checkpoint.save_steps": 2})) == 0
    assert run_cli("sft", *common_flags(tiny_dir, data, out, 6, **{"checkpoint.save_steps": 2}), "--resume") == 0
    assert [r["step"] for r in read_metrics(out)] == list(range(1, 7))


def test_sft_with_lora_exports_merged_model(tmp_path, tiny_dir):
    data = synth(tmp_path / "sft.jsonl", n=64)
    out = tmp_path / "lora"
    assert run_cli("sft", *common_flags(tiny_dir, data, out, 3, **{"model.lora.rank": 4, "train.lr": 1e-2})) == 0
    base = AutoModelForCausalLM.from_pretrained(tiny_dir).state_dict()
    merged = AutoModelForCausalLM.from_pretrained(out / "final").state_dict()
    assert set(base) == set(merged)  # plain transformers weights, no adapter keys
    changed = [k for k in base if not torch.equal(base[k], merged[k])]
    assert changed and all("proj" in k for k in changed)


def test_chat_data_and_mixture(tmp_path, tiny_dir):
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"{i}+1="},
                                                      {"role": "assistant", "content": str(i + 1)}]}) + "\n"
                            for i in range(40)))
    plain = synth(tmp_path / "plain.jsonl", n=40)
    out = tmp_path / "mix"
    flags = common_flags(tiny_dir, chat, out, 2) + ["--data.train_files", chat, plain, "--data.train_weights", 1, 1]
    assert run_cli("sft", *flags) == 0
    assert len(read_metrics(out)) == 2


@pytest.mark.parametrize("packing", ["true", "false"])
def test_packing_does_not_change_the_loss(tmp_path, tiny_dir, packing):
    data = synth(tmp_path / "sft.jsonl", n=32)
    out = tmp_path / packing
    assert run_cli("sft", *common_flags(tiny_dir, data, out, 1, **{"data.packing": packing})) == 0
    loss = read_metrics(out)[0]["loss"]
    ref = getattr(test_packing_does_not_change_the_loss, "ref", None)
    if ref is None:
        test_packing_does_not_change_the_loss.ref = loss
    else:
        assert loss == pytest.approx(ref, rel=1e-5)
