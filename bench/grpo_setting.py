"""What both sides of bench_grpo.py share: the shape of a step and the reward.

A step is `PROMPTS_PER_STEP` prompts x `GROUP` completions each, one generation round and one
optimizer step. The reward is one Python function, `digit_share`: the share of digit characters in the
completion (a random model never solves the arithmetic prompts, so an exact-match reward would be all
zeros; a dense one keeps advantages non-zero). `alignkit_reward` and `trl_reward` wrap it in each
framework's reward signature; alignkit loads this file by path (`--reward.function FILE:alignkit_reward`),
so it imports nothing.
"""

GROUP = 8
PROMPTS_PER_STEP = 16


def digit_share(text: str) -> float:
    """The share of digit characters in `text` (0 for an empty completion)."""
    return sum(c.isdigit() for c in text) / max(len(text), 1)


def alignkit_reward(prompts, responses, labels):  # alignkit's signature (rewards/function.py)
    return [digit_share(r) for r in responses]


def trl_reward(prompts, completions, **kwargs):  # TRL's signature (reward_funcs)
    return [digit_share(c) for c in completions]
