"""Checks of an RL config that types cannot express; each error names the flag and the choices."""

from __future__ import annotations

from alignkit.algos.advantages import ADVANTAGE_ESTIMATORS
from alignkit.config.ranges import check_rl_conflicts
from alignkit.config.rl import RLConfig
from alignkit.config.validate import validate_executor, validate_run
from alignkit.envs.factory import validate_env
from alignkit.errors import ConfigError
from alignkit.rewards.registry import validate_reward
from alignkit.rollout.engines import ENGINES
from alignkit.trainers.rl.validate_teacher import validate_teacher


def validate_rl(cfg: RLConfig) -> None:
    """Choice fields are checked by the parser (their types are Literals); these are the rest."""
    validate_run(cfg, accumulation=False)  # batch_size counts prompts, micro_batch_size sequences
    a, r = cfg.algo, cfg.rollout
    if cfg.train.max_steps < 1:
        raise ConfigError("--train.max_steps must be at least 1 for rl")
    estimator = ADVANTAGE_ESTIMATORS[a.advantage]
    if estimator.grouped and r.n_samples_per_prompt < 2:
        raise ConfigError(
            f"--algo.advantage {a.advantage} compares samples of the same prompt: "
            f"--rollout.n_samples_per_prompt must be at least 2, got {r.n_samples_per_prompt}"
        )
    check_rl_conflicts(cfg, estimator)  # config/ranges.py
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
    if cfg.multi_turn:
        validate_env(cfg.env, cfg.agent)
    if a.overlong_buffer > cfg.response_limit:
        flag = "--env.max_tokens" if cfg.multi_turn else "--rollout.max_new_tokens"
        raise ConfigError(f"--algo.overlong_buffer ({a.overlong_buffer}) must be at most {flag} ({cfg.response_limit})")
    if cfg.env_rewards:  # the environment or the agent code returns the rewards
        return
    if not (cfg.reward.function or cfg.reward.rules or cfg.reward.model_path or cfg.reward.urls):
        raise ConfigError("no reward: give --reward.rules, --reward.function, --reward.model_path or --reward.urls")
    validate_reward(cfg.reward)  # names and weights, before any model is loaded
    validate_teacher(cfg)


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
    if r.async_:
        if r.max_staleness < 1:
            raise ConfigError(f"--rollout.max_staleness must be at least 1 with --rollout.async, got {r.max_staleness}")
        if cfg.algo.dynamic_sampling:
            raise ConfigError("--rollout.async does not combine with --algo.dynamic_sampling "
                              "(refilling a batch waits for the current policy)")
        if ray.gpus_per_worker > 0 and ray.placement == "colocated" and not (ray.bundles or ray.plan):
            raise ConfigError("--rollout.async needs --ray.placement separate on GPUs: colocated roles take turns "
                              "on the same devices, so generation cannot overlap training")


def validate_engine(cfg: RLConfig) -> None:
    """The rollout engine's settings (the engine's own checks: for vLLM also whether it is installed in a
    supported version), before any model is loaded."""
    r, engine = cfg.rollout, ENGINES[cfg.rollout.engine]
    if (engine.own_logprobs or r.async_) and r.tis_cap <= 0:  # the weights of off-policy samples
        raise ConfigError(f"--rollout.tis_cap must be positive, got {r.tis_cap}")
    if engine.check is not None:
        engine.check(cfg)
