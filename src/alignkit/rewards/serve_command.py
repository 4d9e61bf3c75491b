"""`alignkit serve-reward`: serve a reward model or a reward function over HTTP.

    alignkit serve-reward --model_path runs/rm/final --port 8000
    alignkit serve-reward --function my_rewards.py:score --max_batch 128

Clients (`--reward.urls http://127.0.0.1:8000` in training, or any HTTP client) POST
`{"prompts": [...], "responses": [...], "labels": [...]}` to /score and get
`{"scores": [...], "components": {...}}`; GET /health answers when the server is ready.
"""

from __future__ import annotations

import logging

from alignkit.config.parse import parse_config
from alignkit.config.reward import ServeRewardConfig
from alignkit.errors import ConfigError
from alignkit.rewards.base import RewardFn

log = logging.getLogger("alignkit")


def validate_serve(cfg: ServeRewardConfig) -> None:
    if bool(cfg.model_path) == bool(cfg.function):
        raise ConfigError(
            "give exactly one of --model_path (a reward model folder) or --function (path/to/file.py:name)"
        )
    if cfg.max_batch < 1:
        raise ConfigError(f"--max_batch must be at least 1, got {cfg.max_batch}")
    if cfg.max_wait_ms < 0:
        raise ConfigError(f"--max_wait_ms must be >= 0, got {cfg.max_wait_ms}")
    if not 0 <= cfg.port < 65536:
        raise ConfigError(f"--port must be in 0..65535, got {cfg.port}")


def build_served(cfg: ServeRewardConfig) -> tuple[RewardFn, str]:
    """The reward to serve and a one-line description of it."""
    validate_serve(cfg)
    if cfg.function:
        from alignkit.rewards.function import function_reward

        return function_reward(cfg.function), f"function {cfg.function}"
    from alignkit.rewards.model import ModelReward

    scorer = ModelReward(cfg.model_path, cfg.normalize, cfg.max_batch, cfg.device)
    return scorer, f"reward model {cfg.model_path}" + (" (normalized)" if cfg.normalize else "")


def main(argv: list[str]) -> int:
    import uvicorn

    from alignkit.rewards.server import build_app

    cfg = parse_config(ServeRewardConfig, argv, "alignkit serve-reward")
    fn, description = build_served(cfg)
    app = build_app(fn, cfg.max_batch, cfg.max_wait_ms / 1000, description)
    log.info("serving %s on http://%s:%d (POST /score, GET /health)", description, cfg.host, cfg.port)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
    return 0
