"""The calibration report's real runs: short `alignkit rl` runs of tiny models on this machine,
each measured (seconds per step, from its metrics.jsonl) and predicted by the calibrated cost
model (``predict_step_time``: every role in one process, as the local executor runs them).

The runs are built here (a tiny random Llama per size, synthetic arithmetic prompts, the rule
reward ``exact``), so the report needs nothing but this machine. Each runs as its own ``alignkit rl``
process, through the command line a user would type: the planner never imports the trainers.
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alignkit.errors import AlignkitError, ConfigError
from alignkit.orchestration.roles import roles
from alignkit.planner.accuracy import Comparison
from alignkit.planner.calibrate import predict_step_time
from alignkit.planner.efficiency import Efficiency
from alignkit.planner.graph import Workload
from alignkit.planner.hardware import DeviceKind

log = logging.getLogger("alignkit")

# Step 1 pays for first calls (allocations, lazy initialisation): the median of the later steps is
# the steady state the cost model describes.
FIRST_MEASURED_STEP = 2


@dataclass(frozen=True)
class TinyRun:
    """One short `alignkit rl` run of a tiny random Llama."""

    name: str
    preset: str  # the algorithm, as `alignkit rl --preset`: "grpo", or "ppo" (with a critic)
    hidden: int  # hidden size of the tiny Llama
    layers: int
    prompts: int  # prompts per step (--train.batch_size)
    samples: int  # samples per prompt (--rollout.n_samples_per_prompt)
    gen_len: int  # generated tokens per sample (--rollout.max_new_tokens)

    @property
    def detail(self) -> str:
        return f"{self.preset} h{self.hidden}x{self.layers} {self.prompts}x{self.samples} gen {self.gen_len}"


# Size, batch, generation length and algorithm each vary, so step times spread over about an
# order of magnitude and the rank correlation has something to order; a run takes seconds on a CPU.
DEFAULT_RUNS: tuple[TinyRun, ...] = (
    TinyRun("grpo-small", "grpo", 64, 2, 4, 4, 8),
    TinyRun("grpo-small-long", "grpo", 64, 2, 4, 4, 32),
    TinyRun("grpo-mid", "grpo", 128, 4, 8, 4, 16),
    TinyRun("ppo-mid", "ppo", 128, 4, 8, 2, 16),
    TinyRun("grpo-large", "grpo", 256, 4, 8, 4, 16),
    TinyRun("ppo-large", "ppo", 256, 6, 16, 2, 24),
)


def rl_argv(run: TinyRun, model: Path, prompts: Path, out: Path, steps: int) -> list[str]:
    """`alignkit rl` flags of ``run``: one micro-batch per update, every step logged, no eval."""
    flags = {
        "model.path": model, "data.train_files": prompts, "output_dir": out, "train.max_steps": steps,
        "train.batch_size": run.prompts, "train.micro_batch_size": run.prompts * run.samples,
        "rollout.n_samples_per_prompt": run.samples, "rollout.max_new_tokens": run.gen_len,
        "reward.rules": "exact", "data.max_length": 32, "logging.log_steps": 1, "logging.progress": "false",
    }  # fmt: skip
    return ["--preset", run.preset] + [str(x) for k, v in flags.items() for x in (f"--{k}", v)]


def measured_step_time(run_dir: str | Path) -> float:
    """Median ``step_time_s`` of the run's steps from FIRST_MEASURED_STEP on."""
    from alignkit.metrics.logger import read_metrics

    times = [r["step_time_s"] for r in read_metrics(run_dir) if r.get("step", 0) >= FIRST_MEASURED_STEP]
    if not times:
        raise ConfigError(
            f"{run_dir}: no step from step {FIRST_MEASURED_STEP} on in metrics.jsonl to measure"
        )
    return statistics.median(times)


def predicted_step_time(cfg, eff: Efficiency, prompt_len: int, device: DeviceKind | None = None) -> float:
    """The cost model's seconds per step of the `alignkit rl` run configured by ``cfg`` (RLConfig)."""
    a, r, run_roles = cfg.algo, cfg.rollout, roles(cfg)
    workload = Workload(cfg.train.batch_size, prompt_len, r.max_new_tokens, r.n_samples_per_prompt,
                        a.mini_batches, a.ppo_epochs)  # fmt: skip
    return predict_step_time(
        cfg.model.path, workload, eff, device=device, algo="ppo" if "critic" in run_roles else "grpo",
        reference="reference" in run_roles, reward_model=run_roles["reward"].model,
    )  # fmt: skip


def mean_prompt_tokens(cfg) -> int:
    """Mean prompt length in tokens, tokenized as the run does (the cost model takes one length)."""
    from alignkit.data.mixture import load_mixture
    from alignkit.data.prompts import to_prompt
    from alignkit.models.load import load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    d = cfg.data  # the runs hold no eval data back: every record trains
    records = load_mixture(d.train_files, d.train_weights, d.max_samples, cfg.seed)
    return max(1, round(statistics.mean(len(to_prompt(r, tokenizer, cfg.data).ids) for r in records)))


def run_rl(argv: list[str], threads: int | None = None) -> None:
    """``alignkit rl ARGV`` in a child process of this Python, with ``threads`` CPU threads for torch."""
    import alignkit

    env = dict(os.environ)
    # The child imports this alignkit, wherever it was imported from.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(alignkit.__file__).parents[1]), env.get("PYTHONPATH")]))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, "-m", "alignkit.cli", "rl", *argv], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
        raise AlignkitError(f"report run `alignkit rl {' '.join(argv)}` failed: {lines[-1]}")


def compare_runs(
    runs: Sequence[TinyRun],
    eff: Efficiency,
    workdir: str | Path,
    steps: int,
    device: DeviceKind | None = None,
    threads: int | None = None,
) -> list[Comparison]:
    """Run each of ``runs`` for ``steps`` steps under ``workdir`` and compare its measured step
    time with the prediction. ``threads`` sets torch's CPU threads for the runs, as for calibrating."""
    from alignkit.config.parse import parse_config
    from alignkit.config.rl import RLConfig
    from alignkit.config.schema import TinyModelConfig
    from alignkit.data.synth import make_records, write_jsonl
    from alignkit.models.tiny import build_tiny

    if steps < FIRST_MEASURED_STEP:
        raise ConfigError(
            f"the report needs at least {FIRST_MEASURED_STEP} steps per run (step 1 is warm-up), got {steps}"
        )
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    prompts = work / "prompts.jsonl"
    write_jsonl(make_records("arithmetic", "prompt", 256), prompts)
    out: list[Comparison] = []
    for i, run in enumerate(runs, 1):
        model = work / f"tiny-h{run.hidden}x{run.layers}"
        if not (model / "config.json").exists():
            build_tiny(TinyModelConfig(output=str(model), hidden=run.hidden, layers=run.layers))
        argv = rl_argv(run, model, prompts, work / run.name, steps)
        run_rl(argv, threads)
        cfg = parse_config(RLConfig, argv, "alignkit rl")
        row = Comparison(run.name, run.detail, predicted_step_time(cfg, eff, mean_prompt_tokens(cfg), device),
                         measured_step_time(cfg.output_dir))  # fmt: skip
        log.info("report run %d/%d %s: predicted %.4f s/step, measured %.4f s/step", i, len(runs), run.name,
                 row.predicted_s, row.measured_s)  # fmt: skip
        out.append(row)
    return out
