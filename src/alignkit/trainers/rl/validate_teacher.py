"""Checks of on-policy distillation's settings, before any model is loaded: the teacher is there when an
estimator reads one (and only then), and shares the student's tokenizer."""

from __future__ import annotations

from alignkit.algos.advantages import ADVANTAGE_ESTIMATORS
from alignkit.config.rl import RLConfig
from alignkit.config.schema import ModelConfig
from alignkit.errors import ConfigError, ModelError
from alignkit.models.load import load_tokenizer
from alignkit.models.teacher import check_same_tokenizer


def validate_teacher(cfg: RLConfig) -> None:
    a, t = cfg.algo, cfg.teacher
    if not ADVANTAGE_ESTIMATORS[a.advantage].teacher:
        if t.path:
            raise ConfigError(f"--teacher.path is given but --algo.advantage {a.advantage} reads no teacher; "
                              "on-policy distillation is --preset opd")
        if a.opd_reward_weight:
            raise ConfigError(f"--algo.opd_reward_weight weighs a task reward against a teacher, but --algo.advantage "
                              f"{a.advantage} reads no teacher; on-policy distillation is --preset opd")
        return
    if not t.path:
        raise ConfigError(f"--algo.advantage {a.advantage} distils from a teacher: give --teacher.path DIR "
                          "(a Hugging Face causal LM with the student's tokenizer)")
    if t.top_k:
        raise ConfigError("--teacher.top_k is for alignkit distill: on-policy distillation reads only the "
                          "teacher's log-probs of the sampled tokens")
    if a.opd_reward_weight < 0:
        raise ConfigError(f"--algo.opd_reward_weight must be >= 0, got {a.opd_reward_weight}")
    if a.kl_placement == "reward":
        raise ConfigError(f"--algo.advantage {a.advantage} credits each token with its own term: put the KL to the "
                          "reference in the loss (--algo.kl_in_reward false)")
    task = ADVANTAGE_ESTIMATORS[a.opd_reward_advantage]
    if a.opd_reward_weight and task.grouped and cfg.rollout.n_samples_per_prompt < 2:
        raise ConfigError(f"--algo.opd_reward_advantage {a.opd_reward_advantage} compares samples of the same prompt: "
                          f"--rollout.n_samples_per_prompt must be at least 2, got {cfg.rollout.n_samples_per_prompt}")
    try:
        teacher_tok = load_tokenizer(ModelConfig(path=t.path))
    except ModelError as e:
        raise ModelError(f"--teacher.path: {e}") from None
    check_same_tokenizer(cfg.model.tokenizer_path or cfg.model.path, load_tokenizer(cfg.model), t.path, teacher_tok)
