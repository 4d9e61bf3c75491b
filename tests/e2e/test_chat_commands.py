"""Chat templates that rewrite history, through the commands: multi-turn SFT on a Qwen3-style template
trains one row per turn with the shared prefix computed once (the same loss as without sharing), and
`chat_template_kwargs` (a flag, or a YAML mapping) and record tools reach every rendering."""

import json

import pytest
from helpers import SEVENS, common_flags, run_cli

from alignkit.metrics.logger import read_metrics

TOOL = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


def conversations(path, n=8):
    rows = []
    for i in range(n):
        msgs = [{"role": "system", "content": "You add numbers."},
                {"role": "user", "content": f"{i}+1?"},
                {"role": "assistant", "content": f"<think>\n{i} plus one\n</think>\n\n{i + 1}"},
                {"role": "user", "content": f"and {i}+2?"},
                {"role": "assistant", "content": f"<think>\none more\n</think>\n\n{i + 2}"}]
        rows.append({"messages": msgs} | ({"tools": [TOOL]} if i == 0 else {}))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def losses(qwen3_dir, tmp_path_factory):
    """First-step loss of a multi-turn Qwen3-style SFT run with shared prefixes on and off."""
    tmp = tmp_path_factory.mktemp("qwen3_sft")
    data = conversations(tmp / "chat.jsonl")
    out = {}
    for share in ("true", "false"):
        run = tmp / f"share_{share}"
        flags = common_flags(qwen3_dir, data, run, 1, **{"data.max_length": 512, "data.share_prompt": share,
                                                         "train.batch_size": 8, "train.micro_batch_size": 4})
        assert run_cli("sft", *flags) == 0
        out[share] = (read_metrics(run)[0]["loss"], json.loads((run / "final" / "data_stats.json").read_text()))
    return out


def test_multi_turn_sft_trains_one_row_per_turn(losses):
    loss, stats = losses["true"]
    assert stats["records"] == stats["kept"] == stats["multi_row_records"] == 8
    assert loss == pytest.approx(losses["false"][0], rel=1e-5)  # sharing the prefix changes nothing


def test_template_kwargs_from_yaml_and_tools_reach_sampling_prompts(qwen3_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"{i}+1?"}], "tools": [TOOL]}) + "\n"
                               for i in range(8)))
    fn = tmp_path / "fn.py"
    fn.write_text(SEVENS)
    cfg = tmp_path / "run.yaml"
    cfg.write_text("data:\n  chat_template_kwargs:\n    enable_thinking: false\n")
    out = tmp_path / "best.jsonl"
    assert run_cli("rejection-sample", "--config", cfg, "--model.path", qwen3_dir, "--data.train_files", prompts,
                   "--reward.function", f"{fn}:sevens", "--rollout.n_samples_per_prompt", 2,
                   "--rollout.max_new_tokens", 4, "--output", out, "--mode", "sft") == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8
    for r in rows:
        assert r["prompt"].startswith("<|im_start|>system\n# Tools\n")
        assert r["prompt"].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
