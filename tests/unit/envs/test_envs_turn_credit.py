"""Credit of multi-turn rows (trainers/rl/experience.py): token-level estimators see each turn's reward
at its last sampled token; group estimators see the trajectory's reward. Numbers by hand."""

from __future__ import annotations

import pytest
import torch

from alignkit.config.rl import AlgoConfig
from alignkit.trainers.rl.experience import turn_credit, with_advantages
from alignkit.workers.experience import Experience

# Two trajectories: prompt token, turn 1 (2 tokens), an environment token, turn 2 (1 token), padding.
MASK = torch.tensor([[0, 1, 1, 0, 1, 0], [0, 1, 0, 0, 1, 0]], dtype=torch.float32)
TURNS = torch.tensor([[0, 0, 0.5, 0, 1.0, 0], [0, -1.0, 0, 0, 2.0, 0]])


def exp(rewards):
    return Experience(input_ids=torch.zeros(2, 6, dtype=torch.long), lengths=torch.tensor([6, 6]),
                      response_mask=MASK, group_ids=torch.tensor([0, 0]), rewards=torch.tensor(rewards),
                      behaviour_logp=torch.zeros(2, 6), turn_rewards=TURNS)


def test_turn_credit_moves_the_sequence_reward_back_to_the_turns():
    # the row sums (1.5, 1.0) come off the last masked token, where the estimators put the sequence reward
    assert turn_credit(TURNS, MASK).tolist() == [[0, 0, 0.5, 0, -0.5, 0], [0, -1.0, 0, 0, 1.0, 0]]


def test_reinforce_pp_returns_are_per_turn():
    out = with_advantages(exp([1.5, 1.0]), AlgoConfig(advantage="reinforce_pp", gamma=1.0), 0.0)
    # return-to-go: turn 1's tokens get both turns' rewards, turn 2's its own
    assert out.returns.tolist() == [[0, 1.5, 1.5, 0, 1.0, 0], [0, 1.0, 0, 0, 2.0, 0]]
    # the overlong penalty (shaping of the sequence reward, here -0.5 on row 0) stays on the last token
    shaped = with_advantages(exp([1.0, 1.0]), AlgoConfig(advantage="reinforce_pp", gamma=1.0), 0.0)
    assert shaped.returns[0].tolist() == [0, 1.0, 1.0, 0, 0.5, 0]


def test_group_estimators_see_the_trajectory_reward():
    out = with_advantages(exp([1.5, 1.0]), AlgoConfig(advantage="grpo"), 0.0)
    r = torch.tensor([1.5, 1.0])
    adv = (r - r.mean()) / (r.std() + 1e-6)
    torch.testing.assert_close(out.advantages, adv[:, None] * MASK)
    assert float(out.advantages[0, 1]) == pytest.approx(0.7071, abs=1e-4)
