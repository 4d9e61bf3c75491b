"""Weights & Biases logging in offline mode (no network): the run is written under the run directory."""

import pytest
from helpers import common_flags, run_cli, synth

pytest.importorskip("wandb")


def test_wandb_offline_run(tmp_path, tiny_dir, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    data = synth(tmp_path / "d.jsonl", n=32)
    out = tmp_path / "run"
    assert run_cli("sft", *common_flags(tiny_dir, data, out, 2), "--logging.wandb", "true") == 0
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
