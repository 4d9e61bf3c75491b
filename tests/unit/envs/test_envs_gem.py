"""gem-llm environments run unchanged through the loop (offline ones only: GuessTheNumber, rg: tasks)."""

from __future__ import annotations

import pytest
from envs_helpers import ScriptedEngine, binary_search

from alignkit.config.env import EnvConfig
from alignkit.config.sampling import SamplingParams
from alignkit.envs.factory import build_env_factory
from alignkit.envs.loop import Episode, Limits, run_episodes
from alignkit.errors import ConfigError

pytest.importorskip("gem", reason="gem-llm is an optional extra: pip install 'alignkit[envs]'")


def play(tokenizer, episodes, reply=binary_search):
    make_env = build_env_factory(EnvConfig(gem="game:GuessTheNumber-v0-easy"))
    engine = ScriptedEngine(tokenizer, reply)
    return run_episodes(engine, tokenizer, make_env, episodes, SamplingParams(max_new_tokens=64), Limits(max_turns=6))


def test_guess_the_number_is_won_by_bisection_and_seeded(tokenizer):
    episodes = [Episode({}, seed=s, group=g) for g, s in enumerate([1, 1, 2, 3, 4, 5, 6, 7])]
    trajs = play(tokenizer, episodes)
    assert all(t.reward == 1.0 and not t.failed and not t.truncated for t in trajs)
    assert all(1 <= len(t.turns) <= 4 for t in trajs)  # bisection finds 1..10 in at most 4 guesses
    assert trajs[0].ids == trajs[1].ids  # one seed, one game, however the resets interleave
    assert len({tuple(t.ids) for t in trajs}) > 2
    first_prompt = tokenizer.decode(trajs[0].prompt_ids)
    assert "You are playing Guess The Number." in first_prompt and "between 1 and 10" in first_prompt


def test_guess_the_number_format_error_ends_the_game(tokenizer):
    (traj,) = play(tokenizer, [Episode({}, seed=3)], reply=lambda prompt: "five")
    assert traj.reward == pytest.approx(-0.1) and len(traj.turns) == 1 and not traj.truncated


def test_reasoning_gym_task_offline(tokenizer):
    make_env = build_env_factory(EnvConfig(gem="rg:basic_arithmetic", kwargs={"size": 8}))
    env = make_env()
    question, _ = env.reset(seed=0)
    assert question.startswith("Calculate ")
    _, reward, terminated, _, _ = env.step("\\boxed{not a number}")
    assert reward == 0.0 and terminated


def test_unknown_gem_id():
    with pytest.raises(ConfigError) as e:
        build_env_factory(EnvConfig(gem="game:GuessTheNumber-v0-eazy"))
    assert str(e.value) == ("--env.gem: unknown environment 'game:GuessTheNumber-v0-eazy'; "
                            "did you mean 'game:GuessTheNumber-v0-easy'?")
