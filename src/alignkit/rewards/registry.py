"""`RewardConfig` -> one `RewardFn`: every configured source, named, weighted and summed.

Source names, in the order the sources are scored: the user function's name, each rule's name (the
part before ':'), `model` for the reward model, `http` for the reward servers. A name that repeats
(two format rules) gets `_2`, `_3`, ... in the order given.
"""

from __future__ import annotations

import difflib
import math

from alignkit.config.reward import RewardConfig
from alignkit.errors import ConfigError
from alignkit.rewards.base import RewardFn
from alignkit.rewards.combine import Source, WeightedSum


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def source_names(cfg: RewardConfig) -> list[str]:
    """The names of the configured sources, in scoring order (known before anything is loaded)."""
    names = [cfg.function.rpartition(":")[2]] if cfg.function else []
    names += [spec.partition(":")[0] for spec in cfg.rules]
    names += ["model"] if cfg.model_path else []
    names += ["http"] if cfg.urls else []
    return _unique(names)


def validate_reward(cfg: RewardConfig) -> None:
    if cfg.batch_size < 1:
        raise ConfigError(f"--reward.batch_size must be at least 1, got {cfg.batch_size}")
    if cfg.timeout_s <= 0:
        raise ConfigError(f"--reward.timeout_s must be positive, got {cfg.timeout_s}")
    if cfg.retries < 0:
        raise ConfigError(f"--reward.retries must be >= 0, got {cfg.retries}")
    if cfg.clip is not None and cfg.clip <= 0:
        raise ConfigError(f"--reward.clip must be positive (or null), got {cfg.clip}")
    names = source_names(cfg)
    for key, w in cfg.weights.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"--reward.weights names '{key}', which is no reward source{hint} (sources: {', '.join(names) or 'none'})"
            )
        if not math.isfinite(w):
            raise ConfigError(f"--reward.weights: the weight of '{key}' must be a finite number, got {w}")


def _functions(cfg: RewardConfig) -> list[RewardFn]:
    """One RewardFn per source, in the order of `source_names`."""
    # Imported here so that a config with rules only never loads transformers or httpx.
    fns: list[RewardFn] = []
    if cfg.function:
        from alignkit.rewards.function import function_reward

        fns.append(function_reward(cfg.function, cfg.timeout_s))
    if cfg.rules:
        from alignkit.rewards.rules import build_rule

        fns += [build_rule(spec) for spec in cfg.rules]
    if cfg.model_path:
        from alignkit.rewards.model import ModelReward

        fns.append(ModelReward(cfg.model_path, cfg.normalize, cfg.batch_size, cfg.device))
    if cfg.urls:
        from alignkit.rewards.http_client import HttpReward

        fns.append(HttpReward(list(cfg.urls), cfg.timeout_s, cfg.retries, cfg.batch_size))
    return fns


def build_reward(cfg: RewardConfig) -> WeightedSum:
    """The combined reward of every source in `cfg`, checked before anything is loaded."""
    validate_reward(cfg)
    names = source_names(cfg)
    sources = [Source(n, fn, cfg.weights.get(n, 1.0)) for n, fn in zip(names, _functions(cfg), strict=True)]
    return WeightedSum(sources, cfg.clip)
