"""`alignkit demo`: the whole pipeline on embedded defaults, offline, on a CPU.

Builds a tiny model and tokenizer, writes synthetic 2-digit addition data, SFTs the model to a modest
accuracy, then runs GRPO with the verifiable exact-answer reward and reports greedy accuracy on
held-out prompts before SFT, after SFT and after RL, with the reward curve and report.png.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alignkit.config.reward import RewardConfig
from alignkit.config.rl import AlgoConfig, EvalConfig, RLConfig
from alignkit.config.rollout import RolloutConfig
from alignkit.config.schema import (
    DataConfig,
    LoggingConfig,
    ModelConfig,
    SFTConfig,
    TinyModelConfig,
    TrainConfig,
)
from alignkit.data.synth import make_records, write_jsonl
from alignkit.metrics.logger import read_metrics
from alignkit.models.tiny import build_tiny
from alignkit.trainers.rl.online_rl import run_rl
from alignkit.trainers.supervised.sft import run_sft


@dataclass(frozen=True)
class DemoConfig:
    """The demo pipeline: tiny model -> SFT on 2-digit addition -> GRPO with the exact-answer reward."""

    output_dir: str = "runs/demo"
    """Where the demo writes its model, data and runs."""
    task: str = "arithmetic"
    """Synthetic task: arithmetic, sort or reverse."""
    n_train: int = 20000
    """SFT records (RL draws its prompts from another seed)."""
    n_eval: int = 200
    """Held-out prompts for greedy accuracy."""
    sft_steps: int = 1200
    """SFT optimizer steps at a constant learning rate 1e-3 (20-30% accuracy: room for RL to improve)."""
    sft_batch_size: int = 64
    """SFT samples per step."""
    rl_steps: int = 150
    """GRPO steps."""
    rl_prompts_per_step: int = 16
    """Prompts per GRPO step (8 samples each)."""
    rl_lr: float = 1e-4
    """GRPO learning rate."""
    hidden: int = 128
    """Tiny model hidden size."""
    layers: int = 2
    """Tiny model layers."""
    seed: int = 0
    """Seed for data, model and training."""
    progress: bool = True
    """Show progress bars on a terminal."""


def run_demo(cfg: DemoConfig) -> dict[str, float]:
    root = Path(cfg.output_dir)
    say = print
    tiny = build_tiny(TinyModelConfig(output=str(root / "tiny"), hidden=cfg.hidden, layers=cfg.layers, seed=cfg.seed))
    say(f"[1/4] tiny Llama ({cfg.hidden} hidden, {cfg.layers} layers) and tokenizer -> {tiny}")
    data = root / "data"
    write_jsonl(make_records(cfg.task, "sft", cfg.n_train, cfg.seed), data / "sft.jsonl")
    write_jsonl(make_records(cfg.task, "prompt", 4000, cfg.seed + 1), data / "prompts.jsonl")
    write_jsonl(make_records(cfg.task, "prompt", cfg.n_eval, cfg.seed + 2), data / "eval.jsonl")
    say(f"[2/4] synthetic {cfg.task} data (sft, rl prompts, held-out prompts) -> {data}")
    logging = LoggingConfig(progress=cfg.progress)
    sft = run_sft(SFTConfig(
        model=ModelConfig(path=str(tiny)), data=DataConfig(train_files=[str(data / "sft.jsonl")], max_length=32),
        train=TrainConfig(max_steps=cfg.sft_steps, batch_size=cfg.sft_batch_size, micro_batch_size=cfg.sft_batch_size,
                          lr=1e-3, warmup_ratio=0.02, min_lr_ratio=1.0),
        logging=logging, output_dir=str(root / "sft"), seed=cfg.seed,
    ))
    say(f"[3/4] SFT -> {root / 'sft'}: loss {sft['loss']:.3f}")
    rl_cfg = RLConfig(
        model=ModelConfig(path=str(root / "sft" / "final")),
        data=DataConfig(train_files=[str(data / "prompts.jsonl")], eval_files=[str(data / "eval.jsonl")], max_length=32),
        train=TrainConfig(max_steps=cfg.rl_steps, batch_size=cfg.rl_prompts_per_step, micro_batch_size=128,
                          lr=cfg.rl_lr, warmup_ratio=0.0),
        algo=AlgoConfig(advantage="grpo", kl_coef=0.04, loss_agg="seq_mean_token_mean"),
        rollout=RolloutConfig(n_samples_per_prompt=8, max_new_tokens=6, temperature=1.0),
        reward=RewardConfig(rules=["exact"]),
        eval=EvalConfig(steps=max(cfg.rl_steps // 6, 1)),
        logging=logging, output_dir=str(root / "grpo"), seed=cfg.seed,
    )
    run_rl(rl_cfg)
    rows = read_metrics(root / "grpo")
    evals = [(r["step"], r["eval_reward"]) for r in rows if r.get("eval_reward") is not None]
    rewards = [r["reward/mean"] for r in rows if "reward/mean" in r]
    before, after = evals[0][1], evals[-1][1]
    curve = " ".join(f"{r:.2f}" for r in rewards[:: max(len(rewards) // 12, 1)])
    say(f"[4/4] GRPO -> {root / 'grpo'}: held-out greedy accuracy {before:.1%} after SFT -> {after:.1%} after RL")
    say(f"      train reward per step: {curve}")
    say("      eval accuracy by step: " + ", ".join(f"{s}: {a:.1%}" for s, a in evals))
    say(f"done. Plots: {root / 'grpo' / 'report.png'}; runs (config.yaml, metrics.jsonl, final/) under {root}/")
    return {"accuracy_after_sft": before, "accuracy_after_rl": after}
