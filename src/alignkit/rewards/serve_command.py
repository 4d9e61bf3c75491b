"""`alignkit serve-reward`: serve a reward model or a reward function over HTTP.

    alignkit serve-reward --model_path runs/rm/final --port 8000
    alignkit serve-reward --function my_rewards.py:score --max_batch 128

Clients (`--reward.urls http://127.0.0.1:8000` in training, or any HTTP client) POST
`{"prompts": [...], "responses": [...], "labels": [...]}` to /score and get
`{"scores": [...], "components": {...}}`; GET /health answers when the server is ready.
"""

from __future__ import annotations

import logging
import os

from alignkit.config.parse import parse_config
from alignkit.config.reward import ServeRewardConfig
from alignkit.errors import ConfigError
from alignkit.rewards.base import RewardFn
from alignkit.rewards.http_client import TOKEN_ENV

log = logging.getLogger("alignkit")

SHUTDOWN_GRACE_S = 5


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
    if not cfg.timeout_s > 0 or not cfg.max_body_mb > 0:
        raise ConfigError(f"--timeout_s and --max_body_mb must be positive, got {cfg.timeout_s} and {cfg.max_body_mb}")


def build_served(cfg: ServeRewardConfig) -> tuple[RewardFn, str]:
    """The reward to serve and a one-line description of it."""
    validate_serve(cfg)
    if cfg.function:
        from alignkit.rewards.function import function_reward

        # No deadline inside: the request deadline bounds the wait, and a stuck call shows on /health.
        return function_reward(cfg.function, timeout_s=None), f"function {cfg.function}"
    from alignkit.rewards.model import ModelReward

    scorer = ModelReward(cfg.model_path, cfg.normalize, cfg.max_batch, cfg.device)
    return scorer, f"reward model {cfg.model_path}" + (" (normalized)" if cfg.normalize else "")


def main(argv: list[str]) -> int:
    import uvicorn

    from alignkit.rewards.server import build_app

    cfg = parse_config(ServeRewardConfig, argv, "alignkit serve-reward")
    fn, description = build_served(cfg)
    token = cfg.token or os.environ.get(TOKEN_ENV, "")
    app = build_app(fn, cfg.max_batch, cfg.max_wait_ms / 1000, description, cfg.timeout_s, token,
                    int(cfg.max_body_mb * (1 << 20)))
    log.info("serving %s on http://%s:%d (POST /score, GET /health)%s", description, cfg.host, cfg.port,
             ", bearer token required" if token else "")
    # uvicorn stops on SIGTERM and SIGINT: no new requests, those running get SHUTDOWN_GRACE_S to finish,
    # then the process ends by the signal it got (status 143 or 130), as a server should.
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    return 0
