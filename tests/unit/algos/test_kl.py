"""KL estimators and controllers (alignkit.algos.kl)."""

import math

import pytest
import torch

from alignkit.algos.kl import AdaptiveKLController, FixedKLController, kl_estimate, kl_penalty

LOGP = torch.tensor([[-1.0, -2.0]], dtype=torch.float64)
REF = torch.tensor([[-1.5, -0.5]], dtype=torch.float64)
# x = ref - logp = [-0.5, 1.5]


def test_k1_k2_k3_formulas():
    """Schulman, "Approximating KL divergence" (2020): k1 = -x, k2 = x^2/2, k3 = e^x - x - 1."""
    x = [-0.5, 1.5]
    k1 = [0.5, -1.5]
    k2 = [0.125, 1.125]
    k3 = [math.exp(x[0]) - x[0] - 1, math.exp(x[1]) - x[1] - 1]  # 0.10653..., 1.98168...
    torch.testing.assert_close(kl_estimate(LOGP, REF, "k1"), torch.tensor([k1], dtype=torch.float64))
    torch.testing.assert_close(kl_estimate(LOGP, REF, "k2"), torch.tensor([k2], dtype=torch.float64))
    torch.testing.assert_close(kl_estimate(LOGP, REF, "k3"), torch.tensor([k3], dtype=torch.float64))


def test_k3_nonnegative_and_zero_only_at_equality():
    gen = torch.Generator().manual_seed(1)
    logp, ref = torch.randn(64, 33, generator=gen) * 3, torch.randn(64, 33, generator=gen) * 3
    assert (kl_estimate(logp, ref, "k3") >= 0).all()
    assert (kl_estimate(logp, logp, "k3") == 0).all()
    assert (kl_estimate(logp, ref, "k2") >= 0).all()


def test_clamp_bounds_the_log_ratio():
    logp, ref = torch.tensor([[0.0]]), torch.tensor([[100.0]])
    assert torch.isinf(kl_estimate(logp, ref, "k3")).all()
    clamped = kl_estimate(logp.double(), ref.double(), "k3", clamp=20.0)
    assert clamped.item() == pytest.approx(math.exp(20.0) - 20.0 - 1.0)


def test_penalty_bound_by_hand():
    """--algo.kl_clamp 10 (verl's bound of k3): estimates beyond +-10 become +-10 and pass no gradient.

    x = ref - logp: k3 at x = 3 is e^3 - 3 - 1 = 16.09 -> 10; at x = 1, e - 2 = 0.718 (kept); k1 at
    x = -12 is 12 -> 10, at x = 15 is -15 -> -10; k2 at x = 5 is 12.5 -> 10.
    """
    logp = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    k3 = kl_penalty(logp, torch.tensor([[3.0, 1.0]], dtype=torch.float64), "k3", bound=10.0)
    torch.testing.assert_close(k3, torch.tensor([[10.0, math.e - 2.0]], dtype=torch.float64))
    k3.sum().backward()  # d k3 / d logp = 1 - e^x where unclamped
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 1.0 - math.e]], dtype=torch.float64))
    k1 = kl_penalty(torch.zeros(1, 2), torch.tensor([[-12.0, 15.0]]), "k1", bound=10.0)
    assert k1.tolist() == [[10.0, -10.0]]
    assert kl_penalty(torch.zeros(1, 1), torch.tensor([[5.0]]), "k2", bound=10.0).item() == 10.0
    huge = kl_penalty(torch.zeros(1, 1, requires_grad=True), torch.tensor([[200.0]]), "k3", bound=10.0)
    assert huge.item() == 10.0  # exp(200) never formed: no inf, no nan gradient
    assert kl_penalty(torch.zeros(1, 1), torch.tensor([[3.0]]), "k3", None).item() == pytest.approx(math.exp(3) - 4)


def test_unknown_kind():
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(LOGP, REF, "k4")


def test_adaptive_controller_known_numbers():
    """Ziegler et al. 2019 arXiv:1909.08593 eq. 2:
    e = clip(KL / target - 1, -0.2, 0.2); beta *= 1 + e * n_steps / horizon."""
    ctl = AdaptiveKLController(init_coef=0.1, target=6.0, horizon=10000)
    ctl.update(9.0, n_steps=256)  # e = clip(0.5) = 0.2 -> beta = 0.1 * (1 + 0.2 * 256 / 10000) = 0.100512
    assert ctl.value == pytest.approx(0.100512)
    # e = 5.4/6 - 1 = -0.1 -> beta *= 1 - 0.1 * 512 / 10000 = 0.99488
    ctl.update(torch.tensor(5.4), n_steps=512)
    assert ctl.value == pytest.approx(0.100512 * 0.99488)


def test_adaptive_controller_resume_is_exact():
    ctl = AdaptiveKLController(init_coef=0.2, target=1.0, horizon=100)
    for kl in (3.0, 0.5, 1.1):
        ctl.update(kl, n_steps=7)
    resumed = AdaptiveKLController(init_coef=0.2, target=1.0, horizon=100)
    resumed.load_state_dict(ctl.state_dict())
    assert resumed.value == ctl.value
    ctl.update(0.1, n_steps=7)
    resumed.update(0.1, n_steps=7)
    assert resumed.value == ctl.value


def test_fixed_controller():
    ctl = FixedKLController(0.05)
    ctl.update(100.0, n_steps=1000)
    assert ctl.value == 0.05
    other = FixedKLController(1.0)
    other.load_state_dict(ctl.state_dict())  # a fixed coefficient is config: a resume keeps the run's own
    assert other.value == 1.0


def test_adaptive_controller_rejects_bad_target():
    with pytest.raises(ValueError):
        AdaptiveKLController(init_coef=0.1, target=0.0, horizon=10)
