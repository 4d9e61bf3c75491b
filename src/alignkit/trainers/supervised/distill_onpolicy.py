"""GKD's on-policy mix (Agarwal et al. 2024, Algorithm 1): with probability lambda a step trains on the
student's own responses to the step's prompts instead of the dataset's responses.

The coin and the sampling seed of step s are functions of (seed, s), and the engine takes the
student's current weights before it generates, so a resumed run draws the same samples. Data
parallel, every worker syncs (a collective) and generates the whole step, identically, and then takes
its share as usual.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Sequence

from alignkit.backends.base import TrainBackend
from alignkit.config.distill import DistillConfig
from alignkit.config.rollout import RolloutConfig
from alignkit.data.samples import SampleGroup, TokenizedSample
from alignkit.rollout.engines import build_engine


def prompt_ids(group: SampleGroup) -> list[int]:
    """The tokens before the record's first target (its first row's; at least the first token, which
    is never a target)."""
    row = group.samples[0]
    first = next((t for t, m in enumerate(row.loss_mask) if m), len(row.loss_mask))
    return row.input_ids[: max(first, 1)]


def own_record(group: SampleGroup, response: list[int], max_length: int, width: int) -> SampleGroup:
    """The record with the student's `response` after its prompt in place of the dataset's response(s)
    (one row, one turn): the response is cut before any id >= `width` (a padding row of the student's
    embedding that the teacher does not score), then the row to `max_length` (the truncation rule of
    data/tokenize.py). The dataset record is kept when nothing of the response is left."""
    prompt = prompt_ids(group)
    response = response[: next((i for i, t in enumerate(response) if t >= width), len(response))]
    ids = (prompt + response)[:max_length]
    if len(ids) <= len(prompt):
        return group
    row = TokenizedSample(ids, [0] * len(prompt) + [1] * (len(ids) - len(prompt)), f"{group.source} (student)")
    return SampleGroup((row,), row.source)


class OnPolicyMix:
    """The loop's `step_samples` hook (trainers/supervised/loop.py) for `--distill.lmbda` > 0: a generation engine
    over its own copy of the student, synced from `backend` before each on-policy step."""

    def __init__(self, cfg: DistillConfig, backend: TrainBackend, width: int):
        d = cfg.distill
        self.cfg, self.backend, self.width = cfg, backend, width
        self.rollout = RolloutConfig(n_samples_per_prompt=1, temperature=d.temperature,
                                     max_new_tokens=d.max_new_tokens, batch_size=cfg.train.micro_batch_size)
        self.engine = build_engine(cfg.model, self.rollout, cfg.train.device)

    def __call__(self, samples: Sequence[SampleGroup], step: int) -> tuple[list, dict[str, float]]:
        rng = random.Random(f"gkd:{self.cfg.seed}:{step}")
        if rng.random() >= self.cfg.distill.lmbda:
            return list(samples), {"on_policy_frac": 0.0}
        t0 = time.perf_counter()
        self.engine.load_weights(self.backend.full_weights())
        prompts = [prompt_ids(s) for s in samples]
        # tokens past --data.max_length would be cut anyway (own_sample): do not generate them
        room = self.cfg.data.max_length - min(len(p) for p in prompts)
        params = self.rollout.sampling_params(rng.getrandbits(62))
        gens = self.engine.generate(prompts, dataclasses.replace(params, max_new_tokens=min(params.max_new_tokens, room)))
        out = [own_record(s, g.response_ids, self.cfg.data.max_length, self.width)
               for s, g in zip(samples, gens, strict=True)]
        own = [o for o, s in zip(out, samples, strict=True) if o is not s]
        return out, {
            "on_policy_frac": len(own) / len(out),
            "on_policy/response_length": sum(sum(o.samples[0].loss_mask) for o in own) / max(len(own), 1),
            "timing/generate": time.perf_counter() - t0,
        }
