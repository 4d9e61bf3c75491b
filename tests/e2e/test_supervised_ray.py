"""`alignkit sft|dpo|kto|rm --executor ray --policy.backend fsdp2 --policy.num_workers 2`: data parallel
on two Ray actors (one local Ray instance, shared by the module) against the same run in one process.

Tolerances, as in tests/component/test_fsdp2_backend.py: the first step's loss within 1e-6 (the same
weights and samples; only the order in which the two workers' partial sums are added differs), later
steps within 1e-4 (AdamW magnifies the ~1e-7 differences of the summed gradients). Measured: first
losses equal, later ones within 1e-7.
"""

import json
import os
import re
import shutil
import threading
import time

import psutil
import pytest
import ray
import torch
from helpers import common_flags, run_cli, signal_when, synth
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from alignkit.checkpoint.state import list_checkpoints
from alignkit.metrics.logger import read_metrics

TWO_FSDP2 = ["--executor", "ray", "--policy.backend", "fsdp2", "--policy.num_workers", 2, "--ray.call_timeout_s", 120]


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def assert_same_run(local: list[dict], sharded: list[dict], keys: tuple[str, ...]) -> None:
    assert [r["step"] for r in sharded] == [r["step"] for r in local]
    assert sharded[0]["loss"] == pytest.approx(local[0]["loss"], abs=1e-6)
    for a, b in zip(local, sharded, strict=True):
        assert b["tokens"] == a["tokens"], a["step"]  # every worker's tokens counted once
        for key in (k for k in keys if k in a):
            assert b[key] == pytest.approx(a[key], abs=1e-4), (a["step"], key)


def assert_same_weights(cls, a, b) -> None:
    wa, wb = cls.from_pretrained(a).state_dict(), cls.from_pretrained(b).state_dict()
    assert wa.keys() == wb.keys()
    for name, tensor in wa.items():
        torch.testing.assert_close(wb[name], tensor, rtol=0, atol=1e-4, msg=name)


def test_sft_matches_one_process_and_exports(ray_local, tiny_dir, tmp_path):
    data = synth(tmp_path / "sft.jsonl", n=64)
    # 6 eval samples in micro-batches of 8: each worker evaluates 3
    flags = {"data.eval_fraction": 0.1, "train.lr": 1e-3, "train.eval_steps": 2}
    assert run_cli("sft", *common_flags(tiny_dir, data, tmp_path / "local", 3, **flags)) == 0
    assert run_cli("sft", *common_flags(tiny_dir, data, tmp_path / "dp", 3, **flags), *TWO_FSDP2) == 0
    local, sharded = read_metrics(tmp_path / "local"), read_metrics(tmp_path / "dp")
    assert_same_run(local, sharded, ("loss", "nll", "grad_norm", "lr", "eval_loss"))
    assert [r["step"] for r in sharded if "eval_loss" in r] == [2, 3]
    assert (tmp_path / "dp" / "config.yaml").is_file()
    assert (tmp_path / "dp" / "final" / "data_stats.json").is_file()
    assert_same_weights(AutoModelForCausalLM, tmp_path / "local" / "final", tmp_path / "dp" / "final")


RM_KEYS = ("loss", "accuracy", "grad_norm", "eval_loss")
TWO_ZERO3 = ["--executor", "ray", "--policy.backend", "deepspeed", "--policy.zero_stage", 3, "--policy.num_workers", 2,
             "--ray.call_timeout_s", 120]


@pytest.mark.parametrize(("command", "kind", "micro", "keys", "workers"), [
    # micro-batches of one pair: worker 1 has no pair of any micro-batch and runs stand-ins
    ("dpo", "pair", 1, ("loss", "reward_acc", "margin", "grad_norm", "eval_loss"), TWO_FSDP2),
    # KTO's reference point is a statistic of each micro-batch: both workers' shares of it
    ("kto", "unpaired", 4, ("loss", "kl_ref_point", "grad_norm", "eval_loss", "eval_kl_ref_point"), TWO_FSDP2),
    ("rm", "pair", 4, RM_KEYS, TWO_FSDP2),
    ("rm", "pair", 4, RM_KEYS, TWO_ZERO3),
], ids=["dpo", "kto", "rm", "rm-deepspeed-zero3"])
def test_preference_and_reward_match_one_process(ray_local, tiny_dir, tmp_path, command, kind, micro, keys, workers):
    if workers is TWO_ZERO3:
        pytest.importorskip("deepspeed", minversion="0.19.5")
    data = synth(tmp_path / "d.jsonl", task="sort", kind=kind, n=64, seed=1)
    flags = ["--model.path", tiny_dir, "--data.train_files", data, "--train.max_steps", 3, "--train.batch_size", 8,
             "--train.micro_batch_size", micro, "--data.max_length", 48, "--train.lr", 1e-3,
             "--data.eval_fraction", 0.1, "--logging.progress", "false"]
    assert run_cli(command, *flags, "--output_dir", tmp_path / "local") == 0
    assert run_cli(command, *flags, "--output_dir", tmp_path / "dp", *workers) == 0
    assert "backend: " + workers[workers.index("--policy.backend") + 1] in (tmp_path / "dp" / "config.yaml").read_text()
    local, sharded = read_metrics(tmp_path / "local"), read_metrics(tmp_path / "dp")
    assert_same_run(local, sharded, keys)
    if command == "kto":
        assert sharded[-1]["kl_ref_point"] > 0  # the policy has moved: z0 is no longer trivially 0
    cls = AutoModelForSequenceClassification if command == "rm" else AutoModelForCausalLM
    assert_same_weights(cls, tmp_path / "local" / "final", tmp_path / "dp" / "final")
    if command == "rm":  # scores of every training response, gathered from both workers
        want, got = (json.loads((tmp_path / d / "final" / "reward_stats.json").read_text()) for d in ("local", "dp"))
        assert got["count"] == want["count"]
        assert got["mean"] == pytest.approx(want["mean"], abs=1e-4)
        assert got["std"] == pytest.approx(want["std"], abs=1e-4)


def test_sharded_checkpoint_resumes_on_any_backend(ray_local, tiny_dir, tmp_path):
    data = synth(tmp_path / "sft.jsonl", n=64)
    flags = {"train.lr": 1e-3, "checkpoint.save_steps": 2}
    assert run_cli("sft", *common_flags(tiny_dir, data, tmp_path / "full", 4, **flags), *TWO_FSDP2) == 0
    full = read_metrics(tmp_path / "full")
    [ckpt] = list_checkpoints(tmp_path / "full" / "checkpoints")
    assert ckpt.name == "step_2"
    # the checkpoint holds full weights and optimizer state: fsdp2 on two workers and torch in one
    # process both continue the run
    for name, backend in (("two_fsdp2", TWO_FSDP2), ("torch", [])):
        shutil.copytree(ckpt, tmp_path / name / "checkpoints" / "step_2")
        assert run_cli("sft", *common_flags(tiny_dir, data, tmp_path / name, 4, **flags), *backend, "--resume") == 0
        resumed = read_metrics(tmp_path / name)
        assert [r["step"] for r in resumed] == [3, 4]
        for a, b in zip(full[2:], resumed, strict=True):
            for key in ("loss", "grad_norm", "lr"):
                assert b[key] == pytest.approx(a[key], abs=1e-6 if backend else 1e-4), (name, a["step"], key)


def test_worker_error_names_the_worker(ray_local, tmp_path, capsys):
    data = synth(tmp_path / "sft.jsonl", n=32)
    assert run_cli("sft", *common_flags(tmp_path / "missing", data, tmp_path / "o", 1), *TWO_FSDP2) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("alignkit sft: error: policy worker ") and "(run): " in err, err
    assert f"{tmp_path}/missing" in err


def test_dead_worker_stops_the_run(ray_local, tiny_dir, tmp_path, capsys):
    data = synth(tmp_path / "sft.jsonl", n=64)
    out, result = tmp_path / "o", {}
    args = ["sft", *common_flags(tiny_dir, data, out, 100_000), *TWO_FSDP2]
    run = threading.Thread(target=lambda: result.update(rc=run_cli(*args)))
    run.start()
    t0 = time.monotonic()
    while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text():  # training started
        assert run.is_alive() and time.monotonic() - t0 < 60
        time.sleep(0.2)
    # the workers' processes: children of this Ray instance's raylet, which this process started
    hosts = [p for p in psutil.Process(os.getpid()).children(recursive=True) if "ray::WorkerHost" in " ".join(p.cmdline())]
    assert len(hosts) == 2
    t0 = time.monotonic()
    hosts[0].kill()
    run.join(timeout=60)
    assert not run.is_alive() and time.monotonic() - t0 < 30  # noticed at once, not after the collective timeout
    assert result["rc"] == 2
    err = capsys.readouterr().err
    assert re.search(r"policy worker [01] died during run", err), err


def test_sigterm_reaches_the_workers_through_the_run_directory(ray_local, tiny_dir, tmp_path, capsys):
    data = synth(tmp_path / "sft.jsonl", n=64)
    out = tmp_path / "run"
    signal_when(lambda: (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().count("\n") >= 2)
    assert run_cli("sft", *common_flags(tiny_dir, data, out, 5000), "--executor", "ray") == 143
    last = read_metrics(out)[-1]["step"]
    ckpt = out / "checkpoints" / f"step_{last}"
    assert f"alignkit sft: stopped by SIGTERM: checkpoint {ckpt} written" in capsys.readouterr().err
    assert list_checkpoints(out / "checkpoints") == [ckpt]
    assert not (out / ".alignkit-stop").exists()
