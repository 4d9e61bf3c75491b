"""`alignkit rm` end to end: accuracy rises above chance; final/ loads as a sequence classifier."""

import json

import torch
from helpers import common_flags, run_cli, synth
from transformers import AutoModelForSequenceClassification

from alignkit.metrics.logger import read_metrics


def test_rm_accuracy_rises_and_exports(tmp_path, tiny_dir):
    # Sort pairs: the rejected side is a near-sorted list, which a random-init model can learn to spot.
    data = synth(tmp_path / "pairs.jsonl", task="sort", kind="pair", n=640)
    out = tmp_path / "rm"
    flags = common_flags(tiny_dir, data, out, 60, **{"train.lr": 5e-4, "data.eval_fraction": 0.2, "train.eval_steps": 30})
    assert run_cli("rm", *flags) == 0
    rows = read_metrics(out)
    assert {"accuracy", "chosen_score", "rejected_score", "loss"} <= set(rows[-1])
    assert rows[-1]["eval_accuracy"] > 0.65, rows[-1]
    train_acc = [r["accuracy"] for r in rows]
    assert sum(train_acc[-10:]) / 10 > sum(train_acc[:10]) / 10
    stats = json.loads((out / "final" / "reward_stats.json").read_text())
    assert stats["count"] == 2 * 512 and stats["std"] > 0
    model = AutoModelForSequenceClassification.from_pretrained(out / "final")
    assert model(torch.tensor([[5, 6, 7]])).logits.shape == (1, 1)
