"""Checks of an RL config that types cannot express; each error names the flag and the choices."""

from __future__ import annotations

from alignkit.algos.advantages import ADVANTAGE_ESTIMATORS
from alignkit.algos.aggregate import AGG_MODES
from alignkit.algos.kl import KL_KINDS
from alignkit.algos.objective import POLICY_LOSSES
from alignkit.config.rl import RLConfig
from alignkit.config.validate import validate_run
from alignkit.errors import ConfigError

GROUP_ESTIMATORS = {"grpo", "dr_grpo", "rloo", "reinforce_baseline"}


def _choice(flag: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{flag} must be one of {', '.join(sorted(choices))}, got '{value}'")


def validate_rl(cfg: RLConfig) -> None:
    validate_run(cfg, accumulation=False)  # batch_size counts prompts, micro_batch_size sequences
    a, r = cfg.algo, cfg.rollout
    _choice("--algo.advantage", a.advantage, ADVANTAGE_ESTIMATORS)
    _choice("--algo.policy_loss", a.policy_loss, POLICY_LOSSES)
    _choice("--algo.loss_agg", a.loss_agg, AGG_MODES)
    _choice("--algo.kl_estimator", a.kl_estimator, KL_KINDS)
    _choice("--executor", cfg.executor, {"local"})
    if cfg.train.max_steps < 1:
        raise ConfigError("--train.max_steps must be at least 1 for rl")
    if a.advantage in GROUP_ESTIMATORS and r.n_samples_per_prompt < 2:
        raise ConfigError(
            f"--algo.advantage {a.advantage} compares samples of the same prompt: "
            f"--rollout.n_samples_per_prompt must be at least 2, got {r.n_samples_per_prompt}"
        )
    if a.ppo_epochs < 1 or a.mini_batches < 1:
        raise ConfigError("--algo.ppo_epochs and --algo.mini_batches must be at least 1")
    n_seqs = cfg.train.batch_size * r.n_samples_per_prompt
    if a.mini_batches > n_seqs:
        raise ConfigError(f"--algo.mini_batches ({a.mini_batches}) exceeds the sequences per step ({n_seqs})")
    if r.max_new_tokens < 1:
        raise ConfigError("--rollout.max_new_tokens must be at least 1")
    if not (cfg.reward.function or cfg.reward.rules or cfg.reward.model_path or cfg.reward.urls):
        raise ConfigError("no reward: give --reward.rules, --reward.function, --reward.model_path or --reward.urls")
