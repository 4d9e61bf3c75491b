"""`alignkit demo`: the whole pipeline on embedded defaults, offline, on a CPU.

Builds a tiny model and tokenizer, writes synthetic arithmetic data, measures greedy accuracy on
held-out prompts, runs SFT, measures again, then trains a reward model on preference pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alignkit.config.schema import (
    CheckpointConfig,
    DataConfig,
    LoggingConfig,
    ModelConfig,
    RMConfig,
    SFTConfig,
    TinyModelConfig,
    TrainConfig,
)
from alignkit.data.synth import is_correct, make_records, write_jsonl
from alignkit.models.load import load_causal_lm, load_tokenizer, resolve_device
from alignkit.models.tiny import build_tiny
from alignkit.rollout.greedy import greedy_complete
from alignkit.trainers.reward_model import run_rm
from alignkit.trainers.sft import run_sft


@dataclass(frozen=True)
class DemoConfig:
    """The demo pipeline: tiny model -> SFT on arithmetic -> reward model on preference pairs."""

    output_dir: str = "runs/demo"
    """Where the demo writes its model, data and runs."""
    task: str = "arithmetic"
    """Synthetic task: arithmetic, sort or reverse."""
    n_train: int = 4000
    """Training records for SFT (pairs for the reward model use half as many)."""
    n_eval: int = 200
    """Held-out prompts for greedy accuracy."""
    sft_steps: int = 300
    """SFT optimizer steps."""
    rm_steps: int = 60
    """Reward-model optimizer steps."""
    batch_size: int = 32
    """Samples per optimizer step."""
    hidden: int = 128
    """Tiny model hidden size."""
    layers: int = 2
    """Tiny model layers."""
    seed: int = 0
    """Seed for data, model and training."""
    progress: bool = True
    """Show progress bars on a terminal."""


def accuracy(model_dir: Path, records: list[dict], task: str) -> float:
    cfg = ModelConfig(path=str(model_dir))
    model = load_causal_lm(cfg, resolve_device("auto"))
    tok = load_tokenizer(cfg)
    outs = greedy_complete(model, tok, [r["prompt"] for r in records], max_new_tokens=8)
    return sum(is_correct(task, r["label"], o) for r, o in zip(records, outs, strict=True)) / len(records)


def run_demo(cfg: DemoConfig) -> dict[str, float]:
    root = Path(cfg.output_dir)
    say = print
    tiny = build_tiny(TinyModelConfig(output=str(root / "tiny"), hidden=cfg.hidden, layers=cfg.layers, seed=cfg.seed))
    say(f"[1/4] tiny model and tokenizer -> {tiny}")
    data = root / "data"
    write_jsonl(make_records(cfg.task, "sft", cfg.n_train, cfg.seed), data / "sft.jsonl")
    write_jsonl(make_records(cfg.task, "pair", cfg.n_train // 2, cfg.seed + 1), data / "pairs.jsonl")
    held_out = make_records(cfg.task, "prompt", cfg.n_eval, cfg.seed + 2)
    say(f"[2/4] synthetic {cfg.task} data -> {data}")
    before = accuracy(tiny, held_out, cfg.task)
    logging = LoggingConfig(progress=cfg.progress)
    train = TrainConfig(max_steps=cfg.sft_steps, batch_size=cfg.batch_size, micro_batch_size=cfg.batch_size, lr=3e-3,
                        warmup_ratio=0.05, weight_decay=0.0)
    sft = run_sft(SFTConfig(
        model=ModelConfig(path=str(tiny)), data=DataConfig(train_files=[str(data / "sft.jsonl")], max_length=64),
        train=train, checkpoint=CheckpointConfig(), logging=logging, output_dir=str(root / "sft"), seed=cfg.seed,
    ))
    after = accuracy(root / "sft" / "final", held_out, cfg.task)
    say(f"[3/4] SFT -> {root / 'sft'}: loss {sft['loss']:.3f}; held-out greedy accuracy {before:.1%} -> {after:.1%}")
    rm_train = TrainConfig(max_steps=cfg.rm_steps, batch_size=cfg.batch_size, micro_batch_size=cfg.batch_size, lr=1e-3,
                           warmup_ratio=0.05)
    rm = run_rm(RMConfig(
        model=ModelConfig(path=str(root / "sft" / "final")),
        data=DataConfig(train_files=[str(data / "pairs.jsonl")], eval_fraction=0.1, max_length=64),
        train=rm_train, logging=logging, output_dir=str(root / "rm"), seed=cfg.seed,
    ))
    say(f"[4/4] reward model -> {root / 'rm'}: held-out pair accuracy {rm.get('eval_accuracy', float('nan')):.1%}")
    say(f"done. Runs (config.yaml, metrics.jsonl, final/) are under {root}/")
    return {"accuracy_before": before, "accuracy_after_sft": after, "rm_eval_accuracy": rm.get("eval_accuracy", 0.0)}
