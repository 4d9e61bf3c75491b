"""Flags named after a Python keyword (--rollout.async) and dict-valued flags (--ray.bundles)."""

import pytest

from alignkit.config.parse import parse_config
from alignkit.config.rl import RLConfig
from alignkit.errors import ConfigError


def test_async_flag_sets_the_underscored_field():
    cfg = parse_config(RLConfig, ["--rollout.async", "true", "--rollout.max_staleness", "2"], "alignkit rl")
    assert cfg.rollout.async_ is True and cfg.rollout.max_staleness == 2
    assert parse_config(RLConfig, ["--rollout.async=true"], "alignkit rl").rollout.async_ is True
    assert parse_config(RLConfig, ["--rollout.async_", "true"], "alignkit rl").rollout.async_ is True
    assert parse_config(RLConfig, [], "alignkit rl").rollout.async_ is False


def test_unknown_keyword_flag_still_rejected():
    with pytest.raises(ConfigError, match="unknown option '--rollout.asink'"):
        parse_config(RLConfig, ["--rollout.asink", "true"], "alignkit rl")


def test_role_bundles_flag_takes_one_json_mapping():
    cfg = parse_config(RLConfig, ["--executor", "ray", "--ray.bundles", '{"policy": [0, 1], "rollout": [2]}'],
                       "alignkit rl")
    assert cfg.ray.bundles == {"policy": [0, 1], "rollout": [2]}
