"""Advantage estimators (alignkit.algos.advantages) against hand-computed numbers."""

import math

import pytest
import torch

from alignkit.algos.advantages import ADVANTAGE_ESTIMATORS, AdvantageInput, gae, gae_reference, whiten

F64 = torch.float64


def t(rows):
    return torch.tensor(rows, dtype=F64)


def test_registry_names():
    assert set(ADVANTAGE_ESTIMATORS) == {"gae", "grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "opd"}


# ---------------------------------------------------------------- GAE


def test_gae_hand_example_with_gap_in_mask():
    """Schulman et al. 2016 arXiv:1506.02438 eq. 16: A_t = sum_l (gamma lam)^l delta_{t+l}.

    gamma = 0.9, lam = 0.8, so gamma*lam = 0.72; V after the last masked token is 0.
    Row 0, mask [1,1,1,0], V [0.5,0.4,0.3,-], r_tok [-0.1, 0, -0.2 + 1.0]:
      d2 = 0.8 - 0.3 = 0.5;  d1 = 0 + 0.9*0.3 - 0.4 = -0.13;  d0 = -0.1 + 0.9*0.4 - 0.5 = -0.24
      A2 = 0.5;  A1 = -0.13 + 0.72*0.5 = 0.23;  A0 = -0.24 + 0.72*0.23 = -0.0744
    Row 1, mask [1,0,1,1] (slot 1 skipped: its value 7 and token reward 3 are ignored), reward 2:
      d3 = 2 - 0.3 = 1.7;  d2 = 0.9*0.3 - 0.1 = 0.17;  d0 = 0.9*0.1 - 0.2 = -0.11  (next of 0 is 2)
      A3 = 1.7;  A2 = 0.17 + 0.72*1.7 = 1.394;  A0 = -0.11 + 0.72*1.394 = 0.89368
    returns = A + V on masked tokens.
    """
    inp = AdvantageInput(
        rewards=t([1.0, 2.0]),
        mask=torch.tensor([[1, 1, 1, 0], [1, 0, 1, 1]]),
        values=t([[0.5, 0.4, 0.3, 9.0], [0.2, 7.0, 0.1, 0.3]]),
        token_rewards=t([[-0.1, 0.0, -0.2, 5.0], [0.0, 3.0, 0.0, 0.0]]),
        gamma=0.9,
        lam=0.8,
    )
    adv, ret = ADVANTAGE_ESTIMATORS["gae"](inp)
    torch.testing.assert_close(adv, t([[-0.0744, 0.23, 0.5, 0.0], [0.89368, 0.0, 1.394, 1.7]]))
    torch.testing.assert_close(ret, t([[0.4256, 0.63, 0.8, 0.0], [1.09368, 0.0, 1.494, 2.0]]))


@pytest.mark.parametrize(
    ("gamma", "lam", "seq"),
    # The last case decays below float32's range within the sequence, so the scan stops early.
    [(1.0, 1.0, 37), (0.99, 0.95, 37), (0.5, 0.3, 37), (0.5, 0.3, 300)],
)
def test_gae_vectorised_equals_reference_loop(gamma, lam, seq):
    """The log-depth scan agrees with the plain loop on random ragged masks (holes, empty rows)."""
    gen = torch.Generator().manual_seed(3)
    batch = 16
    mask = torch.rand(batch, seq, generator=gen) < 0.7
    mask[0] = False  # an empty row
    mask[1] = True  # a full row
    inp = AdvantageInput(
        rewards=torch.randn(batch, generator=gen),
        mask=mask,
        values=torch.randn(batch, seq, generator=gen),
        token_rewards=0.1 * torch.randn(batch, seq, generator=gen),
        gamma=gamma,
        lam=lam,
    )
    adv, ret = gae(inp)
    ref_adv, ref_ret = gae_reference(inp)
    torch.testing.assert_close(adv.double(), ref_adv, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ret.double(), ref_ret, atol=1e-4, rtol=1e-4)


def test_gae_needs_values():
    with pytest.raises(ValueError, match="values"):
        gae(AdvantageInput(rewards=t([1.0]), mask=torch.ones(1, 2)))


def test_outputs_carry_no_gradient():
    values = torch.zeros(2, 3, requires_grad=True)
    adv, ret = gae(AdvantageInput(rewards=torch.ones(2), mask=torch.ones(2, 3), values=values))
    assert not adv.requires_grad and not ret.requires_grad


# ---------------------------------------------------------------- group estimators

# Three groups, interleaved: id 5 -> rewards [1, 0, 0, 1] (slots 0, 2, 5, 6); id 9 -> [2, 4, 9]
# (slots 1, 4, 7); id 2 -> [7] alone (slot 3).
GROUP_IDS = torch.tensor([5, 9, 5, 2, 9, 5, 5, 9])
REWARDS = t([1.0, 2.0, 0.0, 7.0, 4.0, 0.0, 1.0, 9.0])
MASK = torch.tensor([[1, 1, 0]] * 4 + [[1, 0, 0]] * 2 + [[1, 1, 1]] * 2)


def _per_sample(by_slot):
    """Expected token tensor: each slot's value on its masked tokens."""
    return MASK.to(F64) * t(by_slot)[:, None]


def test_grpo_hand_example():
    """Shao et al. 2024 arXiv:2402.03300 Sec. 4.1.2: A = (r - mean) / (std + eps), sample std (n-1).

    id 5: mean 0.5, sum of squares 4 * 0.25 = 1, var 1/3 -> A = ±0.5 / (sqrt(1/3) + eps)
    id 9: mean 5, deviations [-3, -1, 4], sum of squares 26, var 13 -> A = dev / (sqrt(13) + eps)
    id 2: a group of one -> 0.
    """
    eps = 1e-6
    s5, s9 = math.sqrt(1 / 3) + eps, math.sqrt(13.0) + eps
    expected = [0.5 / s5, -3 / s9, -0.5 / s5, 0.0, -1 / s9, -0.5 / s5, 0.5 / s5, 4 / s9]
    adv, ret = ADVANTAGE_ESTIMATORS["grpo"](AdvantageInput(rewards=REWARDS, mask=MASK, group_ids=GROUP_IDS))
    torch.testing.assert_close(adv, _per_sample(expected))
    torch.testing.assert_close(ret, adv)


def test_dr_grpo_hand_example():
    """Liu et al. 2025 arXiv:2503.20783 (Fig. 1): A = r - group mean, no std."""
    expected = [0.5, -3.0, -0.5, 0.0, -1.0, -0.5, 0.5, 4.0]
    adv, ret = ADVANTAGE_ESTIMATORS["dr_grpo"](
        AdvantageInput(rewards=REWARDS, mask=MASK, group_ids=GROUP_IDS)
    )
    torch.testing.assert_close(adv, _per_sample(expected))
    torch.testing.assert_close(ret, adv)


def test_rloo_hand_example():
    """Ahmadian et al. 2024 arXiv:2402.14740 (RLOO): A_i = r_i - mean of the other samples.

    id 5: 1 - (0+0+1)/3 = 2/3, 0 - (1+0+1)/3 = -2/3.  id 9: 2 - 13/2 = -4.5, 4 - 11/2 = -1.5,
    9 - 6/2 = 6 (= 3/2 * [-3, -1, 4]).  id 2 alone: no baseline -> 0.
    """
    expected = [2 / 3, -4.5, -2 / 3, 0.0, -1.5, -2 / 3, 2 / 3, 6.0]
    adv, _ = ADVANTAGE_ESTIMATORS["rloo"](AdvantageInput(rewards=REWARDS, mask=MASK, group_ids=GROUP_IDS))
    torch.testing.assert_close(adv, _per_sample(expected))


def test_rloo_equals_scaled_mean_difference_on_random_groups():
    """Leave-one-out baseline, computed with plain floats, equals k/(k-1) * (r - group mean)."""
    gen = torch.Generator().manual_seed(4)
    group_ids = torch.randint(0, 6, (40,), generator=gen)
    rewards = torch.randn(40, generator=gen, dtype=F64)
    adv, _ = ADVANTAGE_ESTIMATORS["rloo"](
        AdvantageInput(rewards=rewards, mask=torch.ones(40, 1), group_ids=group_ids)
    )
    r, g = rewards.tolist(), group_ids.tolist()
    for i in range(40):
        others = [r[j] for j in range(40) if g[j] == g[i] and j != i]
        expected = r[i] - sum(others) / len(others) if others else 0.0
        k = len(others) + 1
        members = [r[j] for j in range(40) if g[j] == g[i]]
        assert adv[i, 0].item() == pytest.approx(expected)
        if k > 1:
            assert expected == pytest.approx(k / (k - 1) * (r[i] - sum(members) / k))


def _token_rewards_for(name):
    return 0.1 * torch.arange(24, dtype=F64).reshape(8, 3) if name == "reinforce_pp_baseline" else None


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"])
def test_group_estimators_ignore_group_order(name):
    """Contiguous and shuffled layouts of the same groups give the same (permuted) advantages."""
    fn = ADVANTAGE_ESTIMATORS[name]
    order = torch.argsort(GROUP_IDS, stable=True)  # contiguous layout
    tok = _token_rewards_for(name)
    shuffled = fn(AdvantageInput(rewards=REWARDS, mask=MASK, group_ids=GROUP_IDS, token_rewards=tok))
    contiguous = fn(
        AdvantageInput(
            rewards=REWARDS[order],
            mask=MASK[order],
            group_ids=GROUP_IDS[order],
            token_rewards=None if tok is None else tok[order],
        )
    )
    for a, b in zip(shuffled, contiguous, strict=True):
        torch.testing.assert_close(a[order], b)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"])
def test_group_estimators_need_group_ids(name):
    with pytest.raises(ValueError, match="group_ids"):
        ADVANTAGE_ESTIMATORS[name](AdvantageInput(rewards=REWARDS, mask=MASK))


def test_sequence_level_estimators_refuse_token_rewards():
    inp = AdvantageInput(rewards=REWARDS, mask=MASK, group_ids=GROUP_IDS, token_rewards=torch.zeros(8, 3))
    with pytest.raises(ValueError, match="token_rewards"):
        ADVANTAGE_ESTIMATORS["grpo"](inp)


def test_input_shape_validation():
    with pytest.raises(ValueError):
        AdvantageInput(rewards=torch.zeros(3), mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="values"):
        AdvantageInput(rewards=torch.zeros(2), mask=torch.ones(2, 4), values=torch.zeros(2, 3))


# ---------------------------------------------------------------- REINFORCE++


def _whiten(values, eps=1e-6):
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / (std + eps) for v in values]


def test_reinforce_pp_hand_example():
    """Hu et al. 2025 arXiv:2501.03262 Sec. 3: return-to-go, then global batch normalisation.

    gamma = 0.5. Row 0, mask [1,1,1], r_tok = [-0.2, 0, -0.4 + 1] = [-0.2, 0, 0.6]:
      G = [-0.2 + 0.5*0.3, 0 + 0.5*0.6, 0.6] = [-0.05, 0.3, 0.6]
    Row 1, mask [1,1,0], reward -1, r_tok = [0, -0.2 - 1] (the 9 is unmasked): G = [-0.6, -1.2]
    Advantages: (G - mean) / (population std + eps) over the 5 masked tokens.
    """
    inp = AdvantageInput(
        rewards=t([1.0, -1.0]),
        mask=torch.tensor([[1, 1, 1], [1, 1, 0]]),
        token_rewards=t([[-0.2, 0.0, -0.4], [0.0, -0.2, 9.0]]),
        gamma=0.5,
    )
    adv, ret = ADVANTAGE_ESTIMATORS["reinforce_pp"](inp)
    g = [-0.05, 0.3, 0.6, -0.6, -1.2]
    w = _whiten(g)
    torch.testing.assert_close(ret, t([[g[0], g[1], g[2]], [g[3], g[4], 0.0]]))
    torch.testing.assert_close(adv, t([[w[0], w[1], w[2]], [w[3], w[4], 0.0]]))


def test_reinforce_baseline_hand_example():
    """REINFORCE++ w/ baseline (arXiv:2501.03262 Sec. 3): r - group mean, then return-to-go (gamma=1)
    and global normalisation. Groups [1, 0] -> [0.5, -0.5]; [3, 3] -> [0, 0].
    Masks [[1,1],[1,0],[1,1],[0,1]]: G = [[0.5,0.5],[-0.5,-],[0,0],[-,0]] -> whiten the 6 values.
    """
    inp = AdvantageInput(
        rewards=t([1.0, 0.0, 3.0, 3.0]),
        mask=torch.tensor([[1, 1], [1, 0], [1, 1], [0, 1]]),
        group_ids=torch.tensor([0, 0, 1, 1]),
    )
    adv, ret = ADVANTAGE_ESTIMATORS["reinforce_pp_baseline"](inp)
    w = _whiten([0.5, 0.5, -0.5, 0.0, 0.0, 0.0])
    torch.testing.assert_close(ret, t([[0.5, 0.5], [-0.5, 0.0], [0.0, 0.0], [0.0, 0.0]]))
    torch.testing.assert_close(adv, t([[w[0], w[1]], [w[2], 0.0], [w[3], w[4]], [0.0, w[5]]]))


def test_a_group_of_one_has_nothing_to_compare_with():
    """The rule for a group of one sample (id 2 below, reward 7): its group-relative reward is 0, so grpo,
    dr_grpo and rloo give it advantage 0 and reinforce_pp_baseline return 0 before normalising."""
    grouped = [name for name, e in ADVANTAGE_ESTIMATORS.items() if e.grouped]
    assert grouped == ["grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"]
    inp = AdvantageInput(rewards=REWARDS, mask=MASK, group_ids=GROUP_IDS)
    for name in grouped:
        adv, ret = ADVANTAGE_ESTIMATORS[name](inp)
        lone = ret if name == "reinforce_pp_baseline" else adv
        assert lone[3].tolist() == [0.0, 0.0, 0.0], name


def test_whiten_by_hand():
    """--algo.whiten_advantages: (A - mean) / (population std + eps) over the masked tokens of the batch.

    Masked values [1, 2, 3, 6]: mean 3, population variance (4 + 1 + 0 + 9) / 4 = 3.5; the 100 is unmasked.
    """
    a = t([[1.0, 2.0, 100.0], [3.0, 6.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    s = math.sqrt(3.5) + 1e-6
    torch.testing.assert_close(whiten(a, mask), t([[-2 / s, -1 / s, 0.0], [0.0, 3 / s, 0.0]]))
