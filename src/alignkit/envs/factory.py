"""`EnvConfig` -> the factory of one environment per trajectory, checked before anything runs.

Which environment (exactly one):
- `--env.class file.py:Class`: the user's class, built as `Class(**env.kwargs)`;
- `--env.gem ID`: a gem-llm environment, `gem.make(ID, **env.kwargs)`;
- `--env.tools file.py:fn ...`: the tool environment, its final answer scored by `--reward.*`;
- none of them: the one-step environment, the response scored by `--reward.*` (single-turn RLVR).
"""

from __future__ import annotations

import difflib

from alignkit.config.env import EnvConfig
from alignkit.envs.protocol import EnvFactory
from alignkit.envs.tool_parsers import get_parser
from alignkit.errors import ConfigError
from alignkit.rewards.base import RewardFn


def validate_env(cfg: EnvConfig, agent: str = "") -> None:
    """Value checks of `cfg` (and of `--agent`, which excludes an environment)."""
    chosen = [flag for flag, value in (("--env.class", cfg.class_), ("--env.gem", cfg.gem),
                                       ("--env.tools", cfg.tools), ("--agent", agent)) if value]
    if len(chosen) > 1:
        raise ConfigError(f"give at most one of --env.class, --env.gem, --env.tools and --agent, got {' and '.join(chosen)}"
                          " (an environment class lists its own tools in a `tools` attribute)")
    get_parser(cfg.tool_parser)
    checks = [
        (cfg.max_turns < 1, f"--env.max_turns must be at least 1, got {cfg.max_turns}"),
        (cfg.max_tokens < 1, f"--env.max_tokens must be at least 1, got {cfg.max_tokens}"),
        (cfg.step_timeout_s <= 0, f"--env.step_timeout_s must be positive, got {cfg.step_timeout_s}"),
        (cfg.agent_timeout_s <= 0, f"--env.agent_timeout_s must be positive, got {cfg.agent_timeout_s}"),
        (cfg.agent_batch_wait_ms < 0, f"--env.agent_batch_wait_ms must be >= 0, got {cfg.agent_batch_wait_ms}"),
    ]
    for bad, message in checks:
        if bad:
            raise ConfigError(message)


def _check_gem_id(env_id: str) -> None:
    from alignkit.envs.gem_adapter import import_gem

    registry = import_gem().envs.registration.ENV_REGISTRY
    if env_id not in registry:
        close = difflib.get_close_matches(env_id, list(registry), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"--env.gem: unknown environment '{env_id}'{hint}")


def build_env_factory(cfg: EnvConfig, reward: RewardFn | None = None, prompt_key: str = "prompt",
                      label_key: str = "label") -> EnvFactory:
    """The environment factory `cfg` describes; `reward` scores the tool and one-step environments'
    answers; `prompt_key` and `label_key` name the record fields those two read."""
    validate_env(cfg)
    kwargs = dict(cfg.kwargs)
    if cfg.class_:
        from alignkit.user_code import load_object

        cls = load_object(cfg.class_, "--env.class", kind="class")
        return lambda: cls(**kwargs)
    if cfg.gem:
        from alignkit.envs.gem_adapter import GemEnv

        _check_gem_id(cfg.gem)
        return lambda: GemEnv(cfg.gem, **kwargs)
    if reward is None:
        raise ConfigError("the tool and one-step environments score answers with a reward: set --reward.rules, "
                          "--reward.function, --reward.model_path or --reward.urls")
    if cfg.tools:
        from alignkit.envs.tool_env import ToolEnv
        from alignkit.envs.tools import load_tools

        tools = load_tools(list(cfg.tools))
        return lambda: ToolEnv(tools, reward, cfg.tool_parser, prompt_key, label_key, cfg.system_prompt)
    from alignkit.envs.reward_env import RewardEnv

    return lambda: RewardEnv(reward, prompt_key, label_key)
