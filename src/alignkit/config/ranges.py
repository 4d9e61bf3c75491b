"""Numeric ranges and conflicting flags, checked before anything is loaded; each error names the flag(s).

A value out of its range (a negative beta, learning rate or KL coefficient, a ratio outside [0, 1])
would train something other than what the user meant, or nothing, without a word; two flags that
contradict each other would leave one of them silently ignored. Checks are per config section (a table,
so a command's config is checked for exactly the sections it has).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from alignkit.errors import ConfigError


def _flag(flag: str, v: float, ok: bool, want: str) -> None:
    if not ok or (isinstance(v, float) and math.isnan(v)):
        raise ConfigError(f"--{flag} must be {want}, got {v}")


def positive(flag: str, v: float) -> None:
    _flag(flag, v, v > 0, "positive")


def non_negative(flag: str, v: float) -> None:
    _flag(flag, v, v >= 0, ">= 0")


def ratio(flag: str, v: float, upper_open: bool = False) -> None:
    _flag(flag, v, 0 <= v < 1 if upper_open else 0 <= v <= 1, "in [0, 1)" if upper_open else "in [0, 1]")


def _train(t: Any) -> None:
    positive("train.lr", t.lr)
    ratio("train.min_lr_ratio", t.min_lr_ratio)
    non_negative("train.weight_decay", t.weight_decay)
    for b in t.adam_betas:
        ratio("train.adam_betas", b, upper_open=True)
    positive("train.adam_eps", t.adam_eps)
    non_negative("train.max_grad_norm", t.max_grad_norm)
    non_negative("train.eval_steps", t.eval_steps)


def _data(d: Any) -> None:
    if d.eval_files and d.eval_fraction > 0:
        raise ConfigError("--data.eval_files and --data.eval_fraction both choose the eval data; give only one")
    if d.max_samples is not None and d.max_samples < 1:
        raise ConfigError(f"--data.max_samples must be at least 1 (or null), got {d.max_samples}")
    if d.train_weights is not None:
        for w in d.train_weights:
            non_negative("data.train_weights", w)
        if not sum(d.train_weights) > 0:
            raise ConfigError(f"--data.train_weights must not all be 0, got {d.train_weights}")


def _model(m: Any) -> None:
    non_negative("model.lora.rank", m.lora.rank)
    positive("model.lora.alpha", m.lora.alpha)
    ratio("model.lora.dropout", m.lora.dropout, upper_open=True)


def _dpo(o: Any) -> None:
    if o.beta is not None:
        positive("dpo.beta", o.beta)
    _flag("dpo.label_smoothing", o.label_smoothing, 0 <= o.label_smoothing < 0.5, "in [0, 0.5)")
    for name in ("simpo_gamma", "orpo_lambda", "rpo_alpha", "nll_weight"):
        non_negative(f"dpo.{name}", getattr(o, name))


def _kto(k: Any) -> None:
    positive("kto.beta", k.beta)
    positive("kto.desirable_weight", k.desirable_weight)
    positive("kto.undesirable_weight", k.undesirable_weight)


def _algo(a: Any) -> None:
    ratio("algo.clip_low", a.clip_low, upper_open=True)  # the ratio is clipped at 1 - clip_low > 0
    non_negative("algo.clip_high", a.clip_high)
    if a.dual_clip is not None:
        _flag("algo.dual_clip", a.dual_clip, a.dual_clip > 1, "greater than 1 (or null)")
    ratio("algo.gamma", a.gamma)
    ratio("algo.lam", a.lam)
    non_negative("algo.kl_coef", a.kl_coef)
    if a.kl_target is not None:
        positive("algo.kl_target", a.kl_target)
        if a.kl_coef == 0:
            raise ConfigError("--algo.kl_target steers --algo.kl_coef, which is 0 (no reference model is loaded): "
                              "give a starting --algo.kl_coef > 0, or drop --algo.kl_target")
    positive("algo.kl_horizon", a.kl_horizon)
    non_negative("algo.entropy_coef", a.entropy_coef)
    if a.value_clip is not None:
        positive("algo.value_clip", a.value_clip)
    non_negative("algo.critic_warmup_steps", a.critic_warmup_steps)
    positive("algo.max_sampling_tries", a.max_sampling_tries)
    non_negative("algo.overlong_buffer", a.overlong_buffer)
    non_negative("algo.overlong_penalty", a.overlong_penalty)


def _rollout(r: Any) -> None:
    non_negative("rollout.temperature", r.temperature)
    _flag("rollout.top_p", r.top_p, 0 < r.top_p <= 1, "in (0, 1]")
    non_negative("rollout.top_k", r.top_k)
    positive("rollout.n_samples_per_prompt", r.n_samples_per_prompt)
    non_negative("rollout.batch_size", r.batch_size)


def _critic(c: Any) -> None:
    positive("critic.lr", c.lr)


def _distill(d: Any) -> None:
    ratio("distill.beta", d.beta)
    positive("distill.temperature", d.temperature)
    ratio("distill.lmbda", d.lmbda)
    positive("distill.max_new_tokens", d.max_new_tokens)
    non_negative("distill.sft_weight", d.sft_weight)


def _teacher(t: Any) -> None:
    non_negative("teacher.top_k", t.top_k)


SECTIONS: dict[str, Callable[[Any], None]] = {
    "train": _train, "data": _data, "model": _model, "dpo": _dpo, "kto": _kto,
    "algo": _algo, "rollout": _rollout, "critic": _critic, "distill": _distill, "teacher": _teacher,
}  # fmt: skip


def check_ranges(cfg: Any) -> None:
    """Every section of `cfg` that has checks, in a fixed order."""
    for name, check in SECTIONS.items():
        section = getattr(cfg, name, None)
        if section is not None:
            check(section)


def check_rl_conflicts(cfg: Any, estimator: Any) -> None:
    """Online-RL flags that contradict each other; `estimator`: the registry entry of --algo.advantage
    (algos/advantages.py `Estimator`: whether it compares a prompt's samples, whether it reads a critic)."""
    a, r = cfg.algo, cfg.rollout
    if estimator.grouped and r.temperature == 0:
        raise ConfigError(f"--rollout.temperature 0 samples the same response {r.n_samples_per_prompt} times per "
                          f"prompt, so every --algo.advantage {a.advantage} advantage is 0 and nothing is learned: "
                          "use a temperature > 0")
    if cfg.ref.path and a.kl_placement == "none":
        raise ConfigError("--ref.path is set but --algo.kl_coef is 0, which loads no reference model: "
                          "give --algo.kl_coef > 0, or drop --ref.path")
    if cfg.critic.path and not estimator.critic:
        raise ConfigError(f"--critic.path is set but --algo.advantage {a.advantage} trains no critic "
                          "(only gae does): drop --critic.path, or use --algo.advantage gae")
