"""Value checks that types alone cannot express; each error names the flag."""

from __future__ import annotations

from alignkit.config.ranges import check_ranges
from alignkit.config.schema import RunConfig
from alignkit.errors import ConfigError


def validate_run(cfg: RunConfig, accumulation: bool = True) -> None:
    """Checks shared by every training command. `accumulation`: batch_size counts the same things as
    micro_batch_size (supervised training), so it must be a multiple of it (unless a token budget,
    micro_batch_tokens, forms the micro-batches)."""
    t, d = cfg.train, cfg.data
    if not cfg.model.path:
        raise ConfigError("--model.path is required: a local Hugging Face model folder")
    if not d.train_files:
        raise ConfigError("--data.train_files is required: one or more data files")
    if cfg.model.logprob_chunk_tokens < 0:
        raise ConfigError(f"--model.logprob_chunk_tokens must be at least 0 (0: all logits at once), got {cfg.model.logprob_chunk_tokens}")
    if t.batch_size < 1 or t.micro_batch_size < 1:
        raise ConfigError("--train.batch_size and --train.micro_batch_size must be at least 1")
    if t.micro_batch_tokens < 0:
        raise ConfigError(f"--train.micro_batch_tokens must be at least 0 (0: --train.micro_batch_size samples), "
                          f"got {t.micro_batch_tokens}")
    if accumulation and not t.micro_batch_tokens and t.batch_size % t.micro_batch_size:
        raise ConfigError(
            f"--train.batch_size ({t.batch_size}) must be a multiple of --train.micro_batch_size ({t.micro_batch_size})"
        )
    if not 0 <= t.warmup_ratio < 1:
        raise ConfigError(f"--train.warmup_ratio must be in [0, 1), got {t.warmup_ratio}")
    if len(t.adam_betas) != 2:
        raise ConfigError(f"--train.adam_betas takes two numbers, got {t.adam_betas}")
    if t.max_steps < 0 or t.epochs < 1:
        raise ConfigError("--train.max_steps must be >= 0 and --train.epochs >= 1")
    if d.max_length < 2:
        raise ConfigError(f"--data.max_length must be at least 2, got {d.max_length}")
    if not 0 <= d.eval_fraction < 1:
        raise ConfigError(f"--data.eval_fraction must be in [0, 1), got {d.eval_fraction}")
    if d.train_weights is not None and len(d.train_weights) != len(d.train_files):
        raise ConfigError(
            f"--data.train_weights has {len(d.train_weights)} values for {len(d.train_files)} train files"
        )
    if cfg.checkpoint.keep < 1:
        raise ConfigError("--checkpoint.keep must be at least 1")
    if cfg.checkpoint.save_steps < 0 or cfg.logging.log_steps < 1:
        raise ConfigError("--checkpoint.save_steps must be >= 0 and --logging.log_steps >= 1")
    if cfg.resume_allow and not cfg.resume:
        raise ConfigError("--resume_allow names fields a resume may change: it needs --resume")
    check_ranges(cfg)  # ranges and conflicts of every section (config/ranges.py)


def validate_executor(cfg: RunConfig) -> None:
    """--executor and the trained model's workers on the Ray executor, for every training command."""
    n = cfg.policy.num_workers
    if n < 1:
        raise ConfigError(f"--policy.num_workers must be at least 1, got {n}")
    if cfg.executor != "ray":
        return
    if n > 1 and not cfg.policy.sharded:
        raise ConfigError(f"--policy.num_workers {n} needs a sharded backend "
                          "(--policy.backend fsdp2 or deepspeed): --policy.backend torch trains one copy")
    if cfg.ray.call_timeout_s <= 0:
        raise ConfigError(f"--ray.call_timeout_s must be positive, got {cfg.ray.call_timeout_s}")
