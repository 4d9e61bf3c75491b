"""`torchrun --nproc_per_node 2 -m alignkit.cli sft --policy.backend fsdp2`: torchrun's processes join
their group by themselves and train data parallel, as on Ray (tolerances: test_supervised_ray.py)."""

import os
import subprocess
import sys

import pytest
from helpers import common_flags, run_cli, synth

from alignkit.metrics.logger import read_metrics


def test_torchrun_fsdp2_matches_one_process(tiny_dir, tmp_path):
    data = synth(tmp_path / "sft.jsonl", n=64)
    flags = [str(f) for f in common_flags(tiny_dir, data, tmp_path / "tr", 3, **{"train.lr": 1e-3})]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "alignkit.cli", "sft", *flags, "--policy.backend", "fsdp2"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert run_cli("sft", *common_flags(tiny_dir, data, tmp_path / "local", 3, **{"train.lr": 1e-3})) == 0
    local, sharded = read_metrics(tmp_path / "local"), read_metrics(tmp_path / "tr")
    assert sharded[0]["loss"] == pytest.approx(local[0]["loss"], abs=1e-6)
    for a, b in zip(local, sharded, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-4)
        assert b["tokens"] == a["tokens"]
    assert (tmp_path / "tr" / "final" / "model.safetensors").is_file()
