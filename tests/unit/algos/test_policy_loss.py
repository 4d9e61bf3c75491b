"""PPO / dual-clip / GSPO policy losses and the TIS weight (alignkit.algos.losses.policy), reduced with
the aggregation modes of alignkit.algos.aggregate; the entropy bonus of alignkit.algos.objective."""

import math

import pytest
import torch

from alignkit.algos.aggregate import aggregate
from alignkit.algos.losses.policy import policy_loss, tis_weight
from alignkit.algos.objective import PolicyObjective, policy_objective

F64 = torch.float64


def ppo_policy_loss(logp, old, adv, mask, agg="token_mean", **clip):
    """The PPO surrogate reduced by `agg`: (loss, metrics as floats)."""
    loss_tok, m = policy_loss("ppo", logp, old, adv, mask, **clip)
    return aggregate(loss_tok, mask, agg), {k: v.value for k, v in m.items()}


def gspo_policy_loss(logp, old, adv, mask):
    """GSPO with the paper's range [1 - 3e-4, 1 + 4e-4] and its sequence-mean aggregation."""
    loss_tok, m = policy_loss("gspo", logp, old, adv, mask, clip_low=3e-4, clip_high=4e-4)
    return aggregate(loss_tok, mask, "seq_mean_token_mean"), {k: v.value for k, v in m.items()}


def _ppo_case():
    # Ratios [1.5, 0.9, 1.5, 0.5] on counted tokens, 10 on a masked-out one; A = [1, 1, -1, -1].
    ratios = [1.5, 0.9, 1.5, 0.5, 10.0]
    old = torch.full((1, 5), -2.0, dtype=F64)
    logp = (old + torch.tensor([[math.log(r) for r in ratios]], dtype=F64)).requires_grad_(True)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, 1.0]], dtype=F64)
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    return logp, old, adv, mask


def test_ppo_clip_higher_hand_example():
    """DAPO arXiv:2503.14476 eq. 10 (PPO arXiv:1707.06347 eq. 7 with range [1-0.2, 1+0.28]).

    per token l = max(-A r, -A clip(r, 0.8, 1.28)):
      A=+1 r=1.5: max(-1.5, -1.28) = -1.28 (clipped)    A=+1 r=0.9: -0.9
      A=-1 r=1.5: max(1.5, 1.28) = 1.5 (not clipped)    A=-1 r=0.5: max(0.5, 0.8) = 0.8 (clipped)
    token_mean = (-1.28 - 0.9 + 1.5 + 0.8) / 4 = 0.03; clip_frac = 2/4.
    """
    logp, old, adv, mask = _ppo_case()
    loss, m = ppo_policy_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.28)
    assert loss.item() == pytest.approx(0.03)
    assert m["clip_frac"] == pytest.approx(0.5)
    assert m["dual_clip_frac"] == 0.0
    assert m["ratio_mean"] == pytest.approx((1.5 + 0.9 + 1.5 + 0.5) / 4)
    assert m["ratio_max"] == pytest.approx(1.5)  # the masked-out 10 is ignored
    assert m["ratio_min"] == pytest.approx(0.5)
    k3 = [r - 1 - math.log(r) for r in (1.5, 0.9, 1.5, 0.5)]  # KL(old || new), samples from old
    assert m["approx_kl"] == pytest.approx(sum(k3) / 4)
    _, raw = policy_loss("ppo", logp, old, adv, mask, clip_high=0.28)
    assert all(not v.total.requires_grad and v.total.dim() == 0 for v in raw.values())
    assert {k: (v.kind, float(v.weight)) for k, v in raw.items()} == {  # each declares its reduction
        "clip_frac": ("mean", 4), "dual_clip_frac": ("mean", 4), "approx_kl": ("mean", 4),
        "ratio_mean": ("mean", 4), "ratio_max": ("max", 4), "ratio_min": ("min", 4)}


def test_ppo_gradient_is_zero_on_clipped_tokens():
    """d l / d logp = -A r where unclipped, 0 where clipped (and on masked-out tokens), / 4 tokens."""
    logp, old, adv, mask = _ppo_case()
    loss, _ = ppo_policy_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.28)
    loss.backward()
    expected = torch.tensor([[0.0, -0.9 / 4, 1.5 / 4, 0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(logp.grad, expected)


def test_dual_clip_hand_example():
    """Ye et al. 2020 arXiv:1912.09729 dual-clip, c = 3: for A < 0 the loss is min(l, -c A).

    A=-1 r=4: max(4, 1.2) = 4 -> min(4, 3) = 3 (dual-clipped);  A=-1 r=2: 2 (< 3, kept);
    A=+1 r=4: max(-4, -1.2) = -1.2 (A > 0 untouched).  Mean = (3 + 2 - 1.2) / 3.
    """
    old = torch.zeros(1, 3, dtype=F64)
    logp = torch.tensor([[math.log(4.0), math.log(2.0), math.log(4.0)]], dtype=F64, requires_grad=True)
    adv = torch.tensor([[-1.0, -1.0, 1.0]], dtype=F64)
    loss, m = ppo_policy_loss(logp, old, adv, torch.ones(1, 3), dual_clip=3.0)
    assert loss.item() == pytest.approx((3 + 2 - 1.2) / 3)
    assert m["dual_clip_frac"] == pytest.approx(1 / 3)
    loss.backward()
    # Only the r=2, A=-1 token passes gradient: -A r / 3 = 2/3.
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 2 / 3, 0.0]], dtype=F64))
    with pytest.raises(ValueError, match="dual_clip"):
        ppo_policy_loss(logp, old, adv, torch.ones(1, 3), dual_clip=1.0)


def test_tis_weight_and_is_weight():
    """Truncated IS (Yao et al. 2025): w = min(pi_old / pi_behaviour, cap), detached, times l."""
    old = torch.tensor([[math.log(3.0), math.log(0.5)]], dtype=F64, requires_grad=True)
    w = tis_weight(old, torch.zeros(1, 2, dtype=F64), cap=2.0)
    torch.testing.assert_close(w, torch.tensor([[2.0, 0.5]], dtype=F64))
    assert not w.requires_grad

    logp, old_lp, adv, mask = _ppo_case()
    weight = torch.tensor([[0.5, 1.0, 2.0, 1.0, 7.0]], dtype=F64)
    obj = PolicyObjective(clip_high=0.28, agg="token_mean")
    terms, m = policy_objective(obj, logp, old_lp, adv, mask, is_weight=weight)  # weighs the surrogate
    assert terms.mean().item() == pytest.approx((0.5 * -1.28 - 0.9 + 2.0 * 1.5 + 0.8) / 4)
    assert m["pg_loss"].value == m["loss"].value == pytest.approx(terms.mean().item())


def test_entropy_bonus():
    """The objective subtracts entropy_coef * mean entropy and logs the parts beside the loss."""
    logp, old, adv, mask = _ppo_case()
    entropy = torch.tensor([[1.0, 2.0, 3.0, 4.0, 100.0]], dtype=F64)
    obj = PolicyObjective(clip_high=0.28, agg="token_mean", entropy_coef=0.01)
    terms, m = policy_objective(obj, logp, old, adv, mask, entropy=entropy)
    assert terms.mean().item() == pytest.approx(0.03 - 0.01 * 2.5)
    assert m["entropy"].value == pytest.approx(2.5)
    assert m["pg_loss"].value == pytest.approx(0.03)
    assert m["entropy_loss"].value == pytest.approx(-0.01 * 2.5)
    assert m["loss"].value == pytest.approx(0.03 - 0.01 * 2.5)


def test_ppo_seq_mean_aggregation():
    """Same per-token losses, GRPO aggregation: row means then mean over rows."""
    logp, old, adv, _ = _ppo_case()

    def two_rows(x):  # the 4 counted tokens as two sequences of 2
        return torch.cat([x[:, :2], x[:, 2:4]])

    loss, _ = ppo_policy_loss(
        two_rows(logp),
        two_rows(old),
        two_rows(adv),
        torch.ones(2, 2),
        agg="seq_mean_token_mean",
        clip_high=0.28,
    )
    assert loss.item() == pytest.approx(((-1.28 - 0.9) / 2 + (1.5 + 0.8) / 2) / 2)


def _gspo_case():
    # Row 0: log-ratios [0.001, -0.0006] (+ a masked 5.0) -> mean 0.0002; row 1: [0.002, 0.001, 0] -> 0.001.
    log_ratio = torch.tensor([[0.001, -0.0006, 5.0], [0.002, 0.001, 0.0]], dtype=F64)
    old = torch.full((2, 3), -1.0, dtype=F64)
    logp = (old + log_ratio).requires_grad_(True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    adv = torch.ones(2, 3, dtype=F64)
    return logp, old, adv, mask


def test_gspo_hand_example():
    """Zheng et al. 2025 arXiv:2507.18071 eq. 5-7: s_i = exp(mean_t log-ratio), clip [1-3e-4, 1+4e-4].

    s0 = exp(0.0002) = 1.00020002 is inside the range -> -s0; s1 = exp(0.001) = 1.0010005 > 1.0004
    and A > 0 -> clipped to -1.0004. Sequence mean: (-s0 - 1.0004) / 2. Clipped tokens: 3 of 5.
    """
    logp, old, adv, mask = _gspo_case()
    loss, m = gspo_policy_loss(logp, old, adv, mask)
    s0, s1 = math.exp(0.0002), math.exp(0.001)
    assert loss.item() == pytest.approx((-s0 - 1.0004) / 2, rel=1e-12)
    assert m["clip_frac"] == pytest.approx(3 / 5)
    assert m["ratio_mean"] == pytest.approx((s0 + s1) / 2)
    assert m["ratio_max"] == pytest.approx(s1)


def test_gspo_gradient_matches_sequence_objective():
    """eq. 5's gradient: d(-s0 / 2)/d logp_t = -(1/2) * s0 * (1/|y0|) = -s0 / 4 on row 0's two tokens;
    row 1 is clipped (zero gradient); the masked token gets nothing."""
    logp, old, adv, mask = _gspo_case()
    loss, _ = gspo_policy_loss(logp, old, adv, mask)
    loss.backward()
    s0 = math.exp(0.0002)
    expected = torch.tensor([[-s0 / 4, -s0 / 4, 0.0], [0.0, 0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(logp.grad, expected)
