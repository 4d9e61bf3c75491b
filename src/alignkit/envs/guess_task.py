"""A multi-turn game a tiny model learns on a CPU: guess a number from 1 to `high` in `turns` turns, told
"higher" or "lower" after each miss (gem's GuessTheNumber, in a few tokens a turn, so that a tiny model
plays it fast).

The synthetic SFT transcripts guess uniformly at random (each guess answered as the game answers it),
so after SFT the model plays the format but not the strategy: a random guesser wins
1 - (1 - 1/high)^turns of the games (high 3, turns 2: 56%; high 7, turns 3: 37%). Binary search wins
every game when 2^turns > high (high 3: 2, then 1 or 3); RL on the game's reward (1 for a hit) moves
the policy toward it, which needs the model to read the game's answers.

    records("sft", n)    -> {"messages": [user prompt, assistant guess, user "higher", ...]}
    records("prompt", n) -> {"target": 2}  (the game of an episode; without it the seed draws one)

`--env.class src/alignkit/envs/guess_task.py:Guess --env.kwargs '{"high": 3}' --env.max_turns 2`
(examples/guess_rl.yaml).
"""

from __future__ import annotations

import random
import re
from typing import Any

from alignkit.errors import AlignkitError


def prompt(high: int) -> str:
    return f"Guess a number from 1 to {high}."


def answer(guess: int | None, target: int, high: int) -> str:
    """What the game says to a miss: where the target lies from the guess, or how to guess."""
    if guess is None:
        return f"Answer with one number from 1 to {high}."
    return "higher" if target > guess else "lower"


class Guess:
    """One game of 1..`high`: the target from the record, else drawn from the seed. Reward 1 for a hit
    (the episode ends), 0 for a miss; the episode's turn limit is --env.max_turns."""

    def __init__(self, high: int = 3):
        self.high = high

    def reset(self, seed: int | None = None, **record: Any) -> tuple[str, dict[str, Any]]:
        self.target = int(record.get("target") or random.Random(seed).randint(1, self.high))
        return prompt(self.high), {}

    def step(self, action: str) -> tuple[str | None, float, bool, bool, dict[str, Any]]:
        found = re.search(r"\d+", action)
        guess = int(found.group()) if found else None
        if guess == self.target:
            return None, 1.0, True, False, {}
        return answer(guess, self.target, self.high), 0.0, False, False, {}


def records(kind: str, n: int, seed: int = 0, high: int = 3, turns: int = 2) -> list[dict]:
    """`n` seeded records for `kind` sft (random-guess transcripts of up to `turns` guesses) or prompt
    (targets)."""
    if kind not in ("sft", "prompt"):
        raise AlignkitError(f"the guess task has kinds sft and prompt, got '{kind}'")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        target = rng.randint(1, high)
        if kind == "prompt":
            out.append({"target": target})
            continue
        messages = [{"role": "user", "content": prompt(high)}]
        for _ in range(turns):
            guess = rng.randint(1, high)
            messages.append({"role": "assistant", "content": str(guess)})
            if guess == target:
                break
            messages.append({"role": "user", "content": answer(guess, target, high)})
        if messages[-1]["role"] == "user":
            messages.pop()  # the game ended on the third miss: nothing more for the model to say
        out.append({"messages": messages})
    return out
