"""From generations and rewards to a training batch: layout, reward shaping, KL penalty, advantages."""

from __future__ import annotations

import torch

from alignkit.algos.advantages import ADVANTAGE_ESTIMATORS, AdvantageInput, Estimator, combine, whiten
from alignkit.algos.kl import kl_penalty
from alignkit.algos.shaping import overlong_penalty
from alignkit.config.rl import AlgoConfig
from alignkit.data.prompts import Prompt
from alignkit.rollout.base import Generation
from alignkit.workers.experience import Experience


def layout(prompts: list[Prompt], gens: list[Generation], group_offset: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Rows of prompt + response, right-padded: input_ids, lengths, response_mask, behaviour_logp,
    group_ids (`group_offset + prompt_index`, so several generation rounds keep distinct groups)."""
    rows = [prompts[g.prompt_index].ids + g.response_ids for g in gens]
    n, width = len(rows), max(len(r) for r in rows)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width))
    blp = torch.zeros((n, width))
    for i, (row, g) in enumerate(zip(rows, gens, strict=True)):
        start = len(prompts[g.prompt_index].ids)
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, start : len(row)] = 1.0
        blp[i, start : len(row)] = torch.tensor(g.logprobs)
    return {
        "input_ids": ids,
        "lengths": torch.tensor([len(r) for r in rows]),
        "response_mask": mask,
        "behaviour_logp": blp,
        "group_ids": torch.tensor([group_offset + g.prompt_index for g in gens]),
    }


def shape_rewards(scores: torch.Tensor, lengths: torch.Tensor, algo: AlgoConfig, max_len: int) -> torch.Tensor:
    """The reward after DAPO's overlong shaping (when enabled). `lengths (n,)`: the tokens after each
    prompt; `max_len`: their limit (--rollout.max_new_tokens, or --env.max_tokens for trajectories)."""
    if not algo.overlong_buffer:
        return scores
    return scores + overlong_penalty(lengths, max_len, algo.overlong_buffer, algo.overlong_penalty)


def turn_credit(turn_rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-turn credit as token rewards beside the sequence reward. `turn_rewards (n, L)` holds each
    turn's reward at its last sampled token, so a row sums to the trajectory's reward, which the
    estimators place on the row's last masked token; subtracting that sum there gives `(n, L)` token
    rewards with which each token's reward is its turn's, and the sequence reward's own shaping (the
    overlong penalty, a group baseline) stays on the last token."""
    m = mask.bool()
    positions = torch.arange(m.shape[1]).expand_as(m)
    last = torch.where(m, positions, -1).amax(-1).clamp(min=0)
    return turn_rewards.scatter_add(-1, last[:, None], -turn_rewards.sum(-1, keepdim=True))


def kl_reward(exp: Experience, algo: AlgoConfig, coef: float) -> torch.Tensor | None:
    """Per-token reward -coef * KL(policy || ref) when the KL is placed in the reward."""
    if algo.kl_placement != "reward" or not coef:
        return None
    kl = kl_penalty(exp.old_logp, exp.ref_logp, algo.kl_estimator, algo.kl_clamp)
    return -coef * kl * exp.response_mask


def with_advantages(exp: Experience, algo: AlgoConfig, kl_coef: float) -> Experience:
    """The advantages and returns of `exp`: the weighted sum of `algo.advantage_terms` (algos/advantages.py
    `combine`), then whitened when asked."""
    token_rewards = kl_reward(exp, algo, kl_coef)
    terms = [(w, ADVANTAGE_ESTIMATORS[name], _input(exp, algo, ADVANTAGE_ESTIMATORS[name], token_rewards))
             for name, w in algo.advantage_terms]
    adv, ret = combine(terms)
    if algo.whiten_advantages:  # after the returns, which stay the critic's targets
        adv = whiten(adv, exp.response_mask)
    return exp.with_(advantages=adv, returns=ret)


def _input(exp: Experience, algo: AlgoConfig, estimator: Estimator, token_rewards: torch.Tensor | None) -> AdvantageInput:
    rewards = exp.rewards
    if exp.turn_rewards is not None and not (estimator.sequence_reward or estimator.teacher):
        # multi-turn, an estimator that credits tokens: each turn's reward at its last sampled token
        credit = turn_credit(exp.turn_rewards, exp.response_mask)
        token_rewards = credit if token_rewards is None else token_rewards + credit
    if token_rewards is not None and estimator.sequence_reward:
        # One reward per sequence: the per-token KL penalty is summed into it (RLOO with the KL in the
        # reward, as in Ahmadian et al. 2024).
        rewards, token_rewards = rewards + token_rewards.sum(-1), None
    return AdvantageInput(
        rewards=rewards,
        mask=exp.response_mask,
        group_ids=exp.group_ids,
        values=exp.values,
        token_rewards=token_rewards,
        logp=exp.old_logp,
        teacher_logp=exp.teacher_logp,
        gamma=algo.gamma,
        lam=algo.lam,
    )
