"""Checks of an RL config that types cannot express; each error names the flag and the choices."""

from __future__ import annotations

from alignkit.algos.advantages import ADVANTAGE_ESTIMATORS
from alignkit.algos.aggregate import AGG_MODES
from alignkit.algos.kl import KL_KINDS
from alignkit.algos.objective import POLICY_LOSSES
from alignkit.config.ranges import check_rl_conflicts
from alignkit.config.rl import RLConfig
from alignkit.config.validate import validate_executor, validate_run
from alignkit.errors import ConfigError
from alignkit.rewards.registry import validate_reward

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
    if cfg.train.max_steps < 1:
        raise ConfigError("--train.max_steps must be at least 1 for rl")
    if a.advantage in GROUP_ESTIMATORS and r.n_samples_per_prompt < 2:
        raise ConfigError(
            f"--algo.advantage {a.advantage} compares samples of the same prompt: "
            f"--rollout.n_samples_per_prompt must be at least 2, got {r.n_samples_per_prompt}"
        )
    check_rl_conflicts(cfg, GROUP_ESTIMATORS)  # config/ranges.py
    if a.ppo_epochs < 1 or a.mini_batches < 1:
        raise ConfigError("--algo.ppo_epochs and --algo.mini_batches must be at least 1")
    n_seqs = cfg.train.batch_size * r.n_samples_per_prompt
    if a.mini_batches > n_seqs:
        raise ConfigError(f"--algo.mini_batches ({a.mini_batches}) exceeds the sequences per step ({n_seqs})")
    if r.max_new_tokens < 1:
        raise ConfigError("--rollout.max_new_tokens must be at least 1")
    n_mini = n_seqs // a.mini_batches
    if cfg.policy.num_workers > n_mini:
        raise ConfigError(f"--policy.num_workers ({cfg.policy.num_workers}) exceeds the sequences of a mini-batch ({n_mini})")
    validate_workers(cfg)
    validate_engine(cfg)
    if not (cfg.reward.function or cfg.reward.rules or cfg.reward.model_path or cfg.reward.urls):
        raise ConfigError("no reward: give --reward.rules, --reward.function, --reward.model_path or --reward.urls")
    validate_reward(cfg.reward)  # names and weights, before any model is loaded


def validate_workers(cfg: RLConfig) -> None:
    """Worker counts, the Ray executor's settings and asynchronous rollouts."""
    r, ray = cfg.rollout, cfg.ray
    validate_executor(cfg)
    if r.num_workers < 1:
        raise ConfigError(f"--rollout.num_workers must be at least 1, got {r.num_workers}")
    if cfg.executor == "local":
        if r.async_:
            raise ConfigError("--rollout.async needs --executor ray (the local executor runs one call at a time)")
        if cfg.policy.num_workers > 1 or r.num_workers > 1:
            raise ConfigError("--policy.num_workers and --rollout.num_workers above 1 need --executor ray")
        return
    _choice("--ray.placement", ray.placement, {"colocated", "separate"})
    if r.async_:
        if r.max_staleness < 1:
            raise ConfigError(f"--rollout.max_staleness must be at least 1 with --rollout.async, got {r.max_staleness}")
        if r.tis_cap <= 0:
            raise ConfigError(f"--rollout.tis_cap must be positive, got {r.tis_cap}")
        if cfg.algo.dynamic_sampling:
            raise ConfigError("--rollout.async does not combine with --algo.dynamic_sampling "
                              "(refilling a batch waits for the current policy)")
        if ray.gpus_per_worker > 0 and ray.placement == "colocated" and not (ray.bundles or ray.plan):
            raise ConfigError("--rollout.async needs --ray.placement separate on GPUs: colocated roles take turns "
                              "on the same devices, so generation cannot overlap training")


def validate_engine(cfg: RLConfig) -> None:
    """The rollout engine's settings; for vLLM also whether it is installed in a supported version,
    before any model is loaded."""
    r = cfg.rollout
    _choice("--rollout.engine", r.engine, {"hf", "vllm"})
    if r.engine != "vllm":
        return
    if r.tensor_parallel_size < 1:
        raise ConfigError(f"--rollout.tensor_parallel_size must be at least 1, got {r.tensor_parallel_size}")
    if not 0 < r.gpu_memory_utilization <= 1:
        raise ConfigError(f"--rollout.gpu_memory_utilization must be in (0, 1], got {r.gpu_memory_utilization}")
    if r.tis_cap <= 0:
        raise ConfigError(f"--rollout.tis_cap must be positive, got {r.tis_cap}")
    gpus = cfg.ray.gpus_per_worker
    if cfg.executor == "ray" and 0 < gpus < r.tensor_parallel_size:
        raise ConfigError(f"--rollout.tensor_parallel_size {r.tensor_parallel_size} needs as many GPUs per rollout "
                          f"worker; --ray.gpus_per_worker is {gpus:g}")
    from alignkit.rollout.vllm_setup import import_vllm

    import_vllm()
