"""On-policy distillation's advantage (algos/advantages.py `opd`), a task reward added with a weight
(`combine` through `AlgoConfig.advantage_terms`), the per-token policy gradient it drives, and the
teacher metrics, against numbers worked out by hand."""

import math

import pytest
import torch

from alignkit.algos.advantages import ADVANTAGE_ESTIMATORS, AdvantageInput, combine
from alignkit.algos.objective import PolicyObjective, policy_objective
from alignkit.config.rl import AlgoConfig
from alignkit.trainers.rl.experience import with_advantages
from alignkit.trainers.rl.teacher_metrics import teacher_metrics
from alignkit.workers.experience import Experience

# two samples of one prompt; token 0 is the prompt (position 0 of a row carries garbage: 9s here)
MASK = torch.tensor([[0.0, 1, 1, 1], [0, 1, 1, 0]])
LOGP = torch.tensor([[9.0, -1.0, -0.5, -2.0], [9, -0.2, -3.0, 9]])
TEACHER = torch.tensor([[-9.0, -0.5, -1.5, -2.0], [-9, -1.2, -1.0, 7]])
# -(logp - teacher) on the response tokens, 0 elsewhere
OPD = torch.tensor([[0.0, 0.5, -1.0, 0.0], [0, -1.0, 2.0, 0]])


def exp(rewards=(1.0, 0.0)) -> Experience:
    return Experience(input_ids=torch.zeros(2, 4, dtype=torch.long), lengths=torch.tensor([4, 3]), response_mask=MASK,
                      group_ids=torch.tensor([0, 0]), rewards=torch.tensor(rewards), behaviour_logp=LOGP,
                      old_logp=LOGP, teacher_logp=TEACHER)


def test_opd_is_minus_the_log_ratio_per_token():
    adv, ret = ADVANTAGE_ESTIMATORS["opd"](AdvantageInput(rewards=torch.tensor([1.0, 0.0]), mask=MASK, logp=LOGP,
                                                          teacher_logp=TEACHER))
    assert torch.equal(adv, OPD) and torch.equal(ret, OPD)  # the reward is not read
    assert ADVANTAGE_ESTIMATORS["opd"].teacher and not ADVANTAGE_ESTIMATORS["opd"].critic


def test_opd_needs_both_log_probs_and_no_token_rewards():
    with pytest.raises(ValueError, match="'opd' needs logp and teacher_logp"):
        ADVANTAGE_ESTIMATORS["opd"](AdvantageInput(rewards=torch.zeros(2), mask=MASK, logp=LOGP))
    with pytest.raises(ValueError, match="put the KL to the reference in the loss"):
        ADVANTAGE_ESTIMATORS["opd"](AdvantageInput(rewards=torch.zeros(2), mask=MASK, logp=LOGP, teacher_logp=TEACHER,
                                                   token_rewards=torch.zeros(2, 4)))


def test_pure_distillation_through_the_config():
    out = with_advantages(exp(), AlgoConfig(advantage="opd"), 0.0)
    assert torch.equal(out.advantages, OPD) and torch.equal(out.returns, OPD)
    assert AlgoConfig(advantage="opd").advantage_terms == (("opd", 1.0),)


def test_a_task_reward_adds_its_estimators_advantage_times_the_weight():
    # grpo on rewards (1, 0) in one group: mean 0.5, unbiased std sqrt(0.5), so +-0.5 / sqrt(0.5) = +-sqrt(0.5)
    cfg = AlgoConfig(advantage="opd", opd_reward_weight=0.5, opd_reward_advantage="grpo")
    assert cfg.advantage_terms == (("opd", 1.0), ("grpo", 0.5))
    out = with_advantages(exp(), cfg, 0.0)
    g = 0.5 * math.sqrt(0.5)
    expected = OPD + torch.tensor([[0.0, g, g, g], [0, -g, -g, 0]])
    assert torch.allclose(out.advantages, expected, atol=1e-5)
    assert torch.equal(out.returns, OPD)  # no critic: the first term's
    # an estimator without a teacher ignores the weight
    assert AlgoConfig(advantage="grpo", opd_reward_weight=0.5).advantage_terms == (("grpo", 1.0),)


def test_returns_come_from_the_term_that_reads_a_critic():
    values = torch.tensor([[0.0, 0.5, 0.5, 0.5], [0, 0.25, 0.25, 0]])
    inp = AdvantageInput(rewards=torch.tensor([1.0, 0.0]), mask=MASK, values=values, logp=LOGP, teacher_logp=TEACHER,
                         gamma=1.0, lam=1.0)
    gae = ADVANTAGE_ESTIMATORS["gae"]
    adv, ret = combine([(1.0, ADVANTAGE_ESTIMATORS["opd"], inp), (2.0, gae, inp)])
    # gamma = lam = 1: A_t = R - V_t (reward 1 / 0 at the end), returns = R on the response tokens
    assert torch.allclose(adv, OPD + 2.0 * torch.tensor([[0.0, 0.5, 0.5, 0.5], [0, -0.25, -0.25, 0]]))
    assert torch.equal(ret, torch.tensor([[0.0, 1.0, 1.0, 1.0], [0, 0, 0, 0]]))


def test_the_policy_gradient_credits_each_token_with_its_own_advantage():
    # one update on the samples (ratio 1), token-mean aggregation: d loss / d logp_t = -A_t / (response tokens)
    logp = LOGP.clone().requires_grad_(True)
    terms, _ = policy_objective(PolicyObjective(agg="token_mean"), logp, None, OPD, MASK)
    (terms.total / 5).backward()
    assert torch.allclose(logp.grad, -OPD * MASK / 5)


def test_teacher_metrics():
    # log-ratios on the response tokens: row 0 (-0.5, 1, 0) at positions 0-2, row 1 (1, -2) at positions 0-1
    m = {k: v.value for k, v in teacher_metrics(exp()).items()}
    assert m == pytest.approx({"teacher/kl": -0.1, "logp/student": -6.7 / 5, "logp/teacher": -6.2 / 5,
                               "teacher/kl/pos_0": 0.25, "teacher/kl/pos_1": -0.5, "teacher/kl/pos_2-3": 0.0})
    assert teacher_metrics(exp())["teacher/kl/pos_0"].weight == 2  # a mean over two tokens
