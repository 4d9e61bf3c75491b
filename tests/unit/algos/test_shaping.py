"""Reward shaping and the dynamic-sampling filter (alignkit.algos.shaping)."""

import pytest
import torch

from alignkit.algos.shaping import clip_rewards, informative_groups, overlong_penalty


def test_overlong_penalty_hand_example():
    """DAPO arXiv:2503.14476 eq. 13, L_max = 20, L_cache = 4, factor 0.5:
    L <= 16 -> 0; 16 < L <= 20 -> (16 - L) / 4; L > 20 -> -1.
    """
    lengths = torch.tensor([10, 16, 17, 19, 20, 21, 100])
    expected = [0.0, 0.0, -0.25, -0.75, -1.0, -1.0, -1.0]
    out = overlong_penalty(lengths, max_len=20, cache_len=4, penalty_factor=0.5)
    torch.testing.assert_close(out, 0.5 * torch.tensor(expected))
    with pytest.raises(ValueError):
        overlong_penalty(lengths, max_len=20, cache_len=0)


def test_clip_rewards():
    torch.testing.assert_close(
        clip_rewards(torch.tensor([-9.0, 0.5, 9.0]), -1.0, 2.0), torch.tensor([-1.0, 0.5, 2.0])
    )


def test_informative_groups():
    """DAPO dynamic sampling (arXiv:2503.14476 eq. 11): drop groups whose rewards are all equal.

    id 3: [1, 0] mixed -> keep; id 7: [1, 1] equal -> drop; id 8: [1] alone -> drop; id 1: [0.5, 2] -> keep.
    """
    rewards = torch.tensor([1.0, 0.5, 1.0, 1.0, 0.0, 2.0, 1.0])
    group_ids = torch.tensor([3, 1, 7, 8, 3, 1, 7])
    expected = torch.tensor([True, True, False, False, True, True, False])
    assert torch.equal(informative_groups(rewards, group_ids), expected)
    perm = torch.tensor([6, 2, 0, 5, 3, 1, 4])
    assert torch.equal(informative_groups(rewards[perm], group_ids[perm]), expected[perm])
