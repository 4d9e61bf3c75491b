"""`import alignkit`, its command line and a local RL step need none of the packages alignkit imports
only where they are used: Ray (the Ray executor), fastapi, uvicorn and pydantic (serve-reward), math-verify
(rule rewards), datasets (Arrow folders), vLLM and DeepSpeed. Checked in a fresh interpreter where
importing any of them fails, as on the GPU kit's machine, which has none of them (bench/gpu)."""

import os
import subprocess
import sys
from pathlib import Path

from helpers import rl_flags

from alignkit.metrics.logger import read_metrics

ABSENT = ("ray", "fastapi", "uvicorn", "starlette", "pydantic", "math_verify", "datasets", "vllm", "deepspeed")
SRC = Path(__file__).resolve().parents[2] / "src"

SCRIPT = """
import sys
for name in {absent!r}:
    sys.modules[name] = None  # `import name` now raises ImportError
import alignkit, alignkit.cli
sys.exit(alignkit.cli.main({argv!r}))
"""


def test_local_rl_step_without_optional_packages(tiny_dir, tmp_path):
    argv = ["rl", "--preset", "grpo", *map(str, rl_flags(tiny_dir, tmp_path, 1))]
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(absent=ABSENT, argv=argv)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["step"] for r in read_metrics(tmp_path / "rl")] == [1]
