"""Preference losses (alignkit.algos.losses.preference) against hand-computed numbers."""

import math

import pytest
import torch

from alignkit.algos.losses.preference import (
    PreferenceConfig,
    PreferenceInput,
    dpo_loss,
    ipo_loss,
    kto_kl_ref_point,
    kto_loss,
    orpo_loss,
    preference_loss,
    rpo_nll,
    simpo_loss,
)

F64 = torch.float64


def t(values):
    return torch.tensor(values, dtype=F64)


def softplus(x):
    return math.log1p(math.exp(x))  # -log sigma(-x)


# Pair 0: chosen log-ratio +1, rejected -1 -> h = 2.  Pair 1: chosen 0, rejected +1 -> h = -1.
PC, PR, RC, RR = t([-10.0, -5.0]), t([-12.0, -4.0]), t([-11.0, -5.0]), t([-11.0, -5.0])


def test_dpo_hand_example():
    """Rafailov et al. 2023 arXiv:2305.18290 eq. 7: -log sigma(beta h), beta = 0.5.

    pair 0: beta h = 1 -> log(1 + e^-1);  pair 1: beta h = -0.5 -> log(1 + e^0.5).
    Rewards beta * log-ratio: chosen [0.5, 0], rejected [-0.5, 0.5].
    """
    loss, m = dpo_loss(PC, PR, RC, RR, beta=0.5)
    assert loss.item() == pytest.approx((softplus(-1.0) + softplus(0.5)) / 2)
    assert m["reward_acc"].item() == pytest.approx(0.5)
    assert m["chosen_reward"].item() == pytest.approx(0.25)
    assert m["rejected_reward"].item() == pytest.approx(0.0)
    assert m["margin"].item() == pytest.approx(0.25)
    assert m["chosen_logp"].item() == pytest.approx(-7.5)
    assert m["rejected_logp"].item() == pytest.approx(-8.0)


def test_dpo_is_log2_when_policy_equals_reference():
    """With pi = pi_ref every log-ratio is 0, so -log sigma(0) = log 2 (arXiv:2305.18290 eq. 7)."""
    gen = torch.Generator().manual_seed(5)
    chosen, rejected = -20 * torch.rand(8, generator=gen), -20 * torch.rand(8, generator=gen)
    loss, m = dpo_loss(chosen, rejected, chosen.clone(), rejected.clone(), beta=0.3)
    assert loss.item() == pytest.approx(math.log(2.0))
    assert m["margin"].item() == 0.0


def test_cdpo_label_smoothing():
    """Conservative DPO (Mitchell 2023): -(1-eps) log sigma(z) - eps log sigma(-z), eps = 0.1, z = beta h."""
    loss, _ = dpo_loss(PC, PR, RC, RR, beta=0.5, label_smoothing=0.1)
    per_pair = [0.9 * softplus(-z) + 0.1 * softplus(z) for z in (1.0, -0.5)]
    assert loss.item() == pytest.approx(sum(per_pair) / 2)


def test_ipo_hand_example():
    """Azar et al. 2023 arXiv:2310.12036 eq. 17: (h - 1/(2 beta))^2 with summed log-ratios, beta = 0.5.

    1/(2 beta) = 1: (2 - 1)^2 = 1, (-1 - 1)^2 = 4 -> mean 2.5.
    """
    loss, m = ipo_loss(PC, PR, RC, RR, beta=0.5)
    assert loss.item() == pytest.approx(2.5)
    assert m["reward_acc"].item() == pytest.approx(0.5)


def test_simpo_hand_example():
    """Meng et al. 2024 arXiv:2405.14734 eq. 6: -log sigma(beta/|y_c| pi_c - beta/|y_r| pi_r - gamma).

    beta = 2, gamma = 0.5; pi_c = -10 over 5 tokens -> -2, pi_r = -12 over 4 tokens -> -3:
    z = 2*(-2) - 2*(-3) - 0.5 = 1.5 -> log(1 + e^-1.5). Rewards -4 and -6.
    """
    loss, m = simpo_loss(t([-10.0]), t([-12.0]), t([5.0]), t([4.0]), beta=2.0, gamma=0.5)
    assert loss.item() == pytest.approx(softplus(-1.5))
    assert m["chosen_reward"].item() == pytest.approx(-4.0)
    assert m["rejected_reward"].item() == pytest.approx(-6.0)
    assert m["reward_acc"].item() == 1.0


def test_simpo_does_not_depend_on_the_reference():
    """SimPO is reference-free: any (or no) reference log-probs give the same loss."""
    cfg = PreferenceConfig(beta=2.0, simpo_gamma=0.5)
    base = dict(
        policy_chosen=t([-10.0]), policy_rejected=t([-12.0]), chosen_len=t([5.0]), rejected_len=t([4.0])
    )
    without_ref, _ = preference_loss("simpo", PreferenceInput(**base), cfg)
    with_ref, _ = preference_loss(
        "simpo", PreferenceInput(**base, ref_chosen=t([-3.0]), ref_rejected=t([-99.0])), cfg
    )
    assert without_ref.item() == with_ref.item() == pytest.approx(softplus(-1.5))


def _log_odds(avg_logp):
    p = math.exp(avg_logp)
    return math.log(p / (1 - p))


def test_orpo_hand_example():
    """Hong et al. 2024 arXiv:2403.07691 eq. 6-7: L_OR = -log sigma(log odds(y_c) - log odds(y_r)),
    P = exp(mean token log-prob), odds = P / (1 - P); lambda = 0.1.

    chosen -2 over 4 tokens -> P = e^-0.5; rejected -6 over 3 -> P = e^-2.
    ORPO's full loss (dispatcher) adds the chosen NLL 2/4 = 0.5.
    """
    ratio = _log_odds(-0.5) - _log_odds(-2.0)  # 0.43271 - (-1.85459) = 2.28729
    l_or = softplus(-ratio)
    loss, m = orpo_loss(t([-2.0]), t([-6.0]), t([4.0]), t([3.0]), lam=0.1)
    assert loss.item() == pytest.approx(0.1 * l_or)
    assert m["log_odds_ratio"].item() == pytest.approx(ratio)
    inputs = PreferenceInput(t([-2.0]), t([-6.0]), chosen_len=t([4.0]), rejected_len=t([3.0]))
    full, m = preference_loss("orpo", inputs, PreferenceConfig(orpo_lambda=0.1))
    assert full.item() == pytest.approx(0.5 + 0.1 * l_or)
    assert m["nll"].item() == pytest.approx(0.5)


def test_orpo_is_finite_at_extreme_probabilities():
    """log(1 - P) is computed without forming 1 - P: P = 1 and P = e^-80 stay finite."""
    chosen = torch.tensor([0.0, -80.0], requires_grad=True)
    loss, _ = orpo_loss(chosen, torch.tensor([-3.0, -1e-3]), torch.ones(2), torch.ones(2))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(chosen.grad).all()


def test_rpo_nll_and_nll_weight():
    """Pang et al. 2024 arXiv:2404.19733 (DPO+NLL): NLL per chosen token, mean(-pi_c / |y_c|).

    [-4/2, -9/3] -> [2, 3] -> 2.5; DPO + 0.2 * 2.5 through the dispatcher.
    """
    nll, m = rpo_nll(t([-4.0, -9.0]), t([2.0, 3.0]))
    assert nll.item() == pytest.approx(2.5)
    assert m["nll"].item() == pytest.approx(2.5)
    inputs = PreferenceInput(
        t([-4.0, -9.0]), t([-5.0, -9.0]), t([-4.0, -8.0]), t([-6.0, -8.0]), t([2.0, 3.0])
    )
    dpo_only, _ = dpo_loss(
        inputs.policy_chosen, inputs.policy_rejected, inputs.ref_chosen, inputs.ref_rejected
    )
    total, _ = preference_loss("dpo", inputs, PreferenceConfig(nll_weight=0.2))
    assert total.item() == pytest.approx(dpo_only.item() + 0.2 * 2.5)


def test_dispatcher_errors():
    with pytest.raises(ValueError, match="unknown preference loss"):
        preference_loss("nope", PreferenceInput(t([-1.0]), t([-1.0])))
    with pytest.raises(ValueError, match="ref_chosen"):
        preference_loss("dpo", PreferenceInput(t([-1.0]), t([-1.0])))


def test_kto_hand_example():
    """Ethayarajh et al. 2024 arXiv:2402.01306 eq. 8: loss = lambda_y - v, beta = 0.5, z0 = 0.4,
    lambda_D = 1, lambda_U = 1.5, r = [1.4, -0.6, 0.4], labels [good, bad, good]:
      good r=1.4: v = sigma(0.5 * 1.0) -> 1 - sigma(0.5)
      bad r=-0.6: v = 1.5 sigma(0.5 * (0.4 + 0.6)) -> 1.5 - 1.5 sigma(0.5)
      good r=0.4: v = sigma(0) = 0.5 -> 0.5
    """
    sig = 1 / (1 + math.exp(-0.5))
    expected = ((1 - sig) + (1.5 - 1.5 * sig) + 0.5) / 3
    ref = t([-10.0, -10.0, -10.0])
    policy = (ref + t([1.4, -0.6, 0.4])).requires_grad_(True)
    z0 = torch.tensor(0.4, dtype=F64, requires_grad=True)
    labels = torch.tensor([True, False, True])
    loss, m = kto_loss(policy, ref, labels, z0, beta=0.5, desirable_weight=1.0, undesirable_weight=1.5)
    assert loss.item() == pytest.approx(expected)
    assert m["chosen_reward"].item() == pytest.approx(0.5 * (1.4 + 0.4) / 2)
    assert m["rejected_reward"].item() == pytest.approx(0.5 * -0.6)
    assert m["desirable_frac"].item() == pytest.approx(2 / 3)
    loss.backward()
    assert z0.grad is None  # the reference point is a constant
    assert policy.grad is not None


def test_kto_kl_ref_point():
    """z0 = max(0, mean(policy - ref)) over mismatched pairs, detached (arXiv:2402.01306 Sec. 4)."""
    policy = torch.tensor([-5.0, -3.0], requires_grad=True)
    assert kto_kl_ref_point(policy, torch.tensor([-6.0, -4.0])).item() == pytest.approx(1.0)
    assert kto_kl_ref_point(policy, torch.tensor([-4.0, -1.0])).item() == 0.0  # mean -1.5 -> 0
    assert not kto_kl_ref_point(policy, torch.tensor([-6.0, -4.0])).requires_grad
