"""The architecture matrix, commands half: every architecture of `init-tiny --arch` through sft, rm, dpo,
kto, rl grpo, rl ppo (its critic is a reward-model head) and sft with LoRA, one or two steps each.

The default subset runs in every CI run and covers a sliding window (mistral), eager-only attention
(gemma2: the default sdpa falls back to eager, models/attention_impl.py), MoE (qwen3_moe), absolute
positions and Conv1D layers (gpt2) and the Llama-3 token layout
(llama3: no pad token, a list of EOS ids); the rest of the matrix is marked slow (ALIGNKIT_SLOW=1).

At the first step the policy is its own reference (dropout is off in training, models/dropout.py, so
gpt2's default 0.1 does not count), so the DPO loss is log 2, the KTO loss is 1/2 and the RL KL is 0 exactly as the papers' formulas give: a check that the
packed policy forward and the reference forward compute the same function on every architecture.
"""

import json
import math

import pytest
import torch
from helpers import common_flags, rl_flags, run_cli, synth
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from alignkit.metrics.logger import read_metrics
from alignkit.models.lora import block_layers
from alignkit.models.tiny_archs import ARCHS

DEFAULT = {"mistral", "gemma2", "qwen3_moe", "gpt2", "llama3"}
COMMANDS = ["sft", "rm", "dpo", "kto", "grpo", "ppo", "lora"]
MATRIX = [pytest.param(a, c, marks=() if a in DEFAULT else pytest.mark.slow, id=f"{a}-{c}")
          for a in sorted(ARCHS) for c in COMMANDS]
SMALL = {"train.batch_size": 4, "train.micro_batch_size": 2, "data.max_length": 32}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("matrix-data")
    return {"sft": synth(d / "sft.jsonl", n=8), "pair": synth(d / "pairs.jsonl", task="sort", kind="pair", n=8),
            "unpaired": synth(d / "unpaired.jsonl", kind="unpaired", n=8)}


def run(command, arch, model, data, out, tmp_path, steps=1, **extra):
    if command in ("grpo", "ppo"):
        assert run_cli("rl", "--preset", command, *rl_flags(model, tmp_path, steps, **extra)) == 0
        return read_metrics(tmp_path / "rl")
    assert run_cli(command, *common_flags(model, data, out, steps, **(SMALL | extra))) == 0
    return read_metrics(out)


@pytest.mark.parametrize("arch,command", MATRIX)
def test_command_on_arch(arch, command, arch_dir, data, tmp_path):
    model = arch_dir(arch)
    base = json.loads((model / "config.json").read_text())
    out = tmp_path / command
    if command == "sft":
        rows = run("sft", arch, model, data["sft"], out, tmp_path, steps=2, **{"train.lr": 1e-3})
        assert len(rows) == 2 and all(math.isfinite(r["loss"]) for r in rows)
        final = AutoModelForCausalLM.from_pretrained(out / "final")
        assert final.config.eos_token_id == base["eos_token_id"] and final.config.pad_token_id == base.get("pad_token_id")
    elif command == "rm":
        rows = run("rm", arch, model, data["pair"], out, tmp_path)
        assert math.isfinite(rows[0]["loss"])
        final = AutoModelForSequenceClassification.from_pretrained(out / "final")
        assert isinstance(final.config.pad_token_id, int) and final.config.eos_token_id == base["eos_token_id"]
        assert (out / "final" / "reward_stats.json").is_file()
    elif command == "dpo":
        rows = run("dpo", arch, model, data["pair"], out, tmp_path)
        assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    elif command == "kto":
        rows = run("kto", arch, model, data["unpaired"], out, tmp_path)
        assert rows[0]["loss"] == pytest.approx(0.5, abs=1e-5)
    elif command in ("grpo", "ppo"):
        steps = 2 if command == "grpo" else 1  # grpo's second step runs on synced weights; ppo adds the critic
        rows = run(command, arch, model, None, out, tmp_path, steps=steps, **{
            "algo.kl_coef": 0.05, "train.batch_size": 2, "rollout.n_samples_per_prompt": 2})
        assert [r["step"] for r in rows] == list(range(1, steps + 1)) and all(math.isfinite(r["loss"]) for r in rows)
        assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)
        if command == "ppo":
            assert all(math.isfinite(r["critic/value_loss"]) for r in rows)
        AutoModelForCausalLM.from_pretrained(tmp_path / "rl" / "final")
    else:  # sft with LoRA on the default targets; the export merges them into the plain weights
        run("sft", arch, model, data["sft"], out, tmp_path, steps=2, **{"model.lora.rank": 4, "train.lr": 1e-2})
        before = AutoModelForCausalLM.from_pretrained(model)
        after = AutoModelForCausalLM.from_pretrained(out / "final")
        b, a = before.state_dict(), after.state_dict()
        assert set(a) == set(b)  # plain transformers names, no adapter keys
        changed = {k for k in b if not torch.equal(a[k], b[k])}
        linear, experts = block_layers(before)
        targets = {f"{n}.weight" for n in linear} | set(experts)
        assert changed and changed <= targets, sorted(changed - targets)
