"""EnvConfig parsing and checks, the environment factory, rows for the trainer, and the metrics."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest
import torch

from alignkit.algos.metric import merge_all, values
from alignkit.config.env import EnvConfig
from alignkit.config.parse import parse_config
from alignkit.envs.factory import build_env_factory, validate_env
from alignkit.envs.metrics import env_metrics
from alignkit.envs.reward_env import RewardEnv
from alignkit.envs.rows import to_rows, trainable
from alignkit.envs.tool_env import ToolEnv
from alignkit.envs.trajectory import Trajectory, Turn
from alignkit.errors import ConfigError
from alignkit.rewards.rules import build_rule


def test_flags_parse_with_the_keyword_alias():
    cfg = parse_config(EnvConfig, ["--class", "envs.py:Game", "--max_turns", "3", "--kwargs", '{"size": 4}',
                                   "--chat_template_kwargs", '{"enable_thinking": false}'], "test")
    assert cfg.class_ == "envs.py:Game" and cfg.max_turns == 3 and cfg.kwargs == {"size": 4}
    assert cfg.chat_template_kwargs == {"enable_thinking": False}


@pytest.mark.parametrize(("cfg", "agent", "message"), [
    (EnvConfig(class_="a.py:E", gem="game:X"), "",
     "give at most one of --env.class, --env.gem, --env.tools and --agent, got --env.class and --env.gem "
     "(an environment class lists its own tools in a `tools` attribute)"),
    (EnvConfig(tools=["t.py:f"]), "a.py:run",
     "give at most one of --env.class, --env.gem, --env.tools and --agent, got --env.tools and --agent "
     "(an environment class lists its own tools in a `tools` attribute)"),
    (EnvConfig(max_turns=0), "", "--env.max_turns must be at least 1, got 0"),
    (EnvConfig(max_tokens=0), "", "--env.max_tokens must be at least 1, got 0"),
    (EnvConfig(step_timeout_s=0), "", "--env.step_timeout_s must be positive, got 0"),
    (EnvConfig(agent_timeout_s=-1), "", "--env.agent_timeout_s must be positive, got -1"),
    (EnvConfig(agent_batch_wait_ms=-1), "", "--env.agent_batch_wait_ms must be >= 0, got -1"),
    (EnvConfig(tool_parser="qwen"), "", "--env.tool_parser: unknown parser 'qwen' (valid: hermes, llama3_json)"),
])
def test_validation_messages(cfg, agent, message):
    with pytest.raises(ConfigError) as e:
        validate_env(cfg, agent)
    assert str(e.value) == message


def test_factory_kinds(tmp_path):
    path = tmp_path / "envs.py"
    path.write_text(textwrap.dedent('''
        class Game:
            def __init__(self, size=2):
                self.size = size
            def reset(self, seed=None, **record):
                return "go", {}
            def step(self, action):
                return None, 1.0, True, False, {}

        def double(x: int) -> int:
            """Double it.

            Args:
                x: The number.
            """
            return 2 * x
    '''))
    game = build_env_factory(EnvConfig(class_=f"{path}:Game", kwargs={"size": 5}))()
    assert type(game).__name__ == "Game" and game.size == 5
    exact = build_rule("exact")
    tool_env = build_env_factory(EnvConfig(tools=[f"{path}:double"]), exact)()
    assert isinstance(tool_env, ToolEnv) and tool_env.tools[0]["function"]["name"] == "double"
    one_step = build_env_factory(EnvConfig(), exact, prompt_key="question", label_key="answer")()
    assert isinstance(one_step, RewardEnv)
    assert one_step.reset(question="1+1=", answer="2") == ("1+1=", {})
    assert one_step.step(" 2 ") == (None, 1.0, True, False, {})
    with pytest.raises(ConfigError) as e:
        build_env_factory(EnvConfig())
    assert str(e.value).startswith("the tool and one-step environments score answers with a reward")
    with pytest.raises(ConfigError) as e:
        build_env_factory(EnvConfig(class_=f"{path}:double"))
    assert str(e.value) == f"--env.class: {path}:double is a function, not a class"


def traj(episode, ids, trained, turns, reward, failed=False, truncation=""):
    logprobs = [-0.5 if t else 0.0 for t in trained]
    return Trajectory(episode, episode // 2, ids[:2], ids, trained, logprobs, turns, reward,
                      bool(truncation), truncation, failed, "boom" if failed else "")


A = traj(0, [1, 2, 10, 11, 3, 12], [0, 0, 1, 1, 0, 1], [Turn(2, 4, 0.5, "stop"), Turn(5, 6, 1.0, "length")], 1.5,
         truncation="max_tokens")
B = traj(1, [1, 2, 20], [0, 0, 1], [Turn(2, 3, -1.0, "stop")], -1.0)
C = traj(2, [1, 2, 30, 4], [0, 0, 1, 0], [Turn(2, 3, 0.0, "stop")], 0.0, failed=True)


def test_rows_by_hand():
    rows = to_rows(trainable([A, B, C]), pad_id=0)
    assert rows["input_ids"].tolist() == [[1, 2, 10, 11, 3, 12], [1, 2, 20, 0, 0, 0]]
    assert rows["lengths"].tolist() == [6, 3]
    assert rows["response_mask"].tolist() == [[0, 0, 1, 1, 0, 1], [0, 0, 1, 0, 0, 0]]
    assert rows["behaviour_logp"].tolist() == [[0, 0, -0.5, -0.5, 0, -0.5], [0, 0, -0.5, 0, 0, 0]]
    assert rows["rewards"].tolist() == [1.5, -1.0] and rows["group_ids"].tolist() == [0, 0]
    assert rows["token_rewards"].tolist() == [[0, 0, 0, 0.5, 0, 1.0], [0, 0, -1.0, 0, 0, 0]]
    assert torch.equal(rows["token_rewards"].sum(-1), rows["rewards"])
    assert rows["truncated"].tolist() == [True, False]
    with pytest.raises(ValueError) as e:
        to_rows([A, C], pad_id=0)
    assert str(e.value) == "failed trajectories cannot be trained on (episodes [2]); filter with trainable()"


def test_metrics_by_hand():
    m = values(env_metrics([A, B, C]))
    assert m["env/trajectories"] == 3 and m["env/failed"] == 1 and m["env/failed_rate"] == pytest.approx(1 / 3)
    assert m["env/turns_mean"] == 1.5 and m["env/turns_max"] == 2.0
    assert m["env/model_tokens_mean"] == 2.0 and m["env/env_tokens_mean"] == 0.5
    assert m["env/truncated_rate"] == pytest.approx(1 / 3) and m["env/truncated_rate/max_tokens"] == pytest.approx(1 / 3)
    assert m["env/truncated_rate/max_turns"] == 0 and "env/tool_success_rate" not in m
    # rounds combine exactly: the metrics of [A] and of [B, C] merged are those of [A, B, C]
    assert values(merge_all([env_metrics([A]), env_metrics([B, C])])) == pytest.approx(m)
    tool = dataclasses.replace(B, tool_calls_ok=3, tool_calls_failed=1, tool_time_s=0.5)
    m = values(merge_all([env_metrics([tool]), env_metrics([A])]))  # A made no calls: the rate is of calls
    assert m["env/tool_success_rate"] == 0.75 and m["env/tool_calls_mean"] == 2.0 and m["env/tool_time_s_mean"] == 0.25
