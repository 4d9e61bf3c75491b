"""`alignkit rejection-sample`: best-of-n by reward, as an SFT file or as preference pairs."""

import json

from helpers import SEVENS, run_cli, synth


def _flags(tiny_dir, tmp_path, out, mode):
    fn = tmp_path / "fn.py"
    fn.write_text(SEVENS)
    prompts = synth(tmp_path / "p.jsonl", kind="prompt", n=12)
    return ["--model.path", tiny_dir, "--data.train_files", prompts, "--reward.function", f"{fn}:sevens",
            "--rollout.n_samples_per_prompt", 8, "--rollout.max_new_tokens", 8, "--output", out, "--mode", mode,
            "--batch_size", 5]


def test_best_of_n_sft(tiny_dir, tmp_path):
    out = tmp_path / "best.jsonl"
    assert run_cli("rejection-sample", *_flags(tiny_dir, tmp_path, out, "sft")) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and {"prompt", "response", "reward"} <= set(rows[0])
    for r in rows:  # the kept response is the one its reward names
        assert abs(r["response"].count("7") / max(len(r["response"]), 1) - r["reward"]) < 1e-6


def test_best_vs_worst_pairs(tiny_dir, tmp_path):
    out = tmp_path / "pairs.jsonl"
    assert run_cli("rejection-sample", *_flags(tiny_dir, tmp_path, out, "pairs")) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["chosen"] != r["rejected"] and r["margin"] > 0 for r in rows)
