"""Knowledge distillation from a frozen teacher (`alignkit distill`): GKD (Agarwal et al. 2024).

Each micro-batch goes through the teacher (no gradient) and the student; at every target token the
loss is the divergence between their next-token distributions (`--distill.loss`, algos/losses/
distill.py), over the full vocabulary or the teacher's top-k plus a tail bucket, computed a chunk of
tokens at a time (algos/chunked.py), summed and divided by the target tokens of the whole step, plus
`--distill.sft_weight` times the targets' NLL. With `--distill.lmbda` > 0 a step trains on the
student's own responses instead of the data's (distill_onpolicy.py). Nothing is precomputed: the
teacher scores every micro-batch as it comes, so resume, data parallel and token-budget micro-batches
work as in SFT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch

from alignkit.algos.chunked import chunked_rows, rows_per_chunk
from alignkit.algos.losses.distill import DIVERGENCE_BETA, full_vocab_terms, topk_terms
from alignkit.algos.positions import (
    N_BUCKETS,
    bucket_counts,
    bucket_name,
    position_bucket,
    response_positions,
)
from alignkit.backends.base import LossFn
from alignkit.backends.factory import build_backend
from alignkit.config.distill import DistillConfig
from alignkit.data.packing import PackedBatch
from alignkit.data.samples import SampleGroup
from alignkit.data.tokenize import tokenize_sft
from alignkit.errors import ConfigError
from alignkit.models.load import load_causal_lm
from alignkit.models.padding import pad_id
from alignkit.models.targets import target_logits, targets_of
from alignkit.models.teacher import Teacher, TeacherTargets, load_teacher, logit_rows, shared_width
from alignkit.trainers.supervised.distill_onpolicy import OnPolicyMix
from alignkit.trainers.supervised.launch import launch
from alignkit.trainers.supervised.loop import train_supervised
from alignkit.trainers.supervised.prepare import finish, prepare, shares_prompts
from alignkit.trainers.supervised.sft import SFTObjective


@dataclass(frozen=True)
class StepCounts:
    """The step's target tokens (the loss's denominator) and how many of them fall in each response-
    position bucket (algos/positions.py; the denominators of the per-position metrics)."""

    tokens: float
    by_bucket: tuple[float, ...]

    @staticmethod
    def of(items: Sequence[SampleGroup]) -> StepCounts:
        seg, pos = [], []
        for i, s in enumerate(r for g in items for r in g.samples):
            targets = [t for t in range(1, len(s.loss_mask)) if s.loss_mask[t]]  # position 0 never is (packing)
            seg += [i] * len(targets)
            pos += targets
        where = response_positions(torch.tensor(seg, dtype=torch.long), torch.tensor(pos, dtype=torch.long))
        return StepCounts(float(len(pos)), tuple(bucket_counts(where).tolist()))


def validate_distill(cfg: DistillConfig) -> None:
    """What the range table (config/ranges.py, run by every training command) cannot say."""
    if not cfg.teacher.path:
        raise ConfigError("--teacher.path is required: the teacher's Hugging Face model folder")


@dataclass(frozen=True, kw_only=True)
class DistillObjective(SFTObjective):
    """SFT's samples and packing; the loss of a micro-batch against the teacher's scores."""

    teacher: Teacher
    beta: float
    sft_weight: float

    def denominator(self, items: Sequence[SampleGroup]) -> StepCounts:
        return StepCounts.of(items)

    def loss_fn(self, denom: StepCounts | float) -> LossFn:
        # a float is the data-parallel stand-in's infinite denominator: everything divides to 0
        counts = denom if isinstance(denom, StepCounts) else StepCounts(denom, (denom,) * N_BUCKETS)

        def fn(model, batch: PackedBatch):
            scores = self.teacher.score(batch)
            terms = self.token_terms(target_logits(model, batch, self.teacher.width), scores, batch)
            div, _, _, student_lp = terms.unbind(-1)
            loss = (div.sum() - self.sft_weight * student_lp.sum()) / counts.tokens
            return loss, self.metrics(terms.detach(), scores, batch, counts)

        return fn

    def token_terms(self, logits: torch.Tensor, scores: TeacherTargets, batch: PackedBatch) -> torch.Tensor:
        """`(n, 4)` per target: divergence, forward KL, reverse KL, the student's target log-prob."""
        targets, t = targets_of(batch).ids, self.teacher
        chunk = rows_per_chunk(t.width)
        if scores.logits is not None:
            fn = partial(full_vocab_terms, beta=self.beta, temperature=t.temperature)
            return chunked_rows(fn, logits, scores.logits, targets, chunk=chunk)
        fn = partial(topk_terms, beta=self.beta, temperature=t.temperature)
        return chunked_rows(fn, logits, scores.topk_ids, scores.topk_logprobs, targets, chunk=chunk)

    def metrics(self, terms: torch.Tensor, scores: TeacherTargets, batch: PackedBatch,
                counts: StepCounts) -> dict[str, torch.Tensor]:
        """Shares of the step's per-token means (they add up over micro-batches and workers)."""
        div, fkl, rkl, student_lp = terms.unbind(-1)
        n = counts.tokens
        out = {"distill_loss": div.sum() / n, "kl/forward": fkl.sum() / n,
               "kl/reverse": rkl.sum() / n, "logp/student": student_lp.sum() / n,
               "logp/teacher": scores.target_logprobs.sum() / n}
        if scores.topk_logprobs is not None:
            out["teacher/topk_mass"] = (1 - scores.topk_logprobs[:, -1].exp()).sum() / n
        tg = targets_of(batch)
        bucket = position_bucket(response_positions(tg.seg_ids, tg.positions))
        for name, values in (("forward", fkl), ("reverse", rkl)):
            sums = torch.zeros(N_BUCKETS, dtype=values.dtype, device=values.device).index_add(0, bucket, values)
            out |= {f"kl/{name}/pos_{bucket_name(b)}": sums[b] / c for b, c in enumerate(counts.by_bucket) if c}
        return out


def run_distill(cfg: DistillConfig) -> dict[str, float]:
    """Train per `cfg` (in this process, or data parallel: trainers/supervised/launch.py)."""
    validate_distill(cfg)
    return launch(cfg, train_distill)


def train_distill(cfg: DistillConfig) -> dict[str, float]:
    """One worker's part of `run_distill`; each worker holds a whole teacher."""
    p = prepare(cfg, tokenize_sft)
    device = p.run.device
    teacher_model = load_teacher(cfg.model, cfg.teacher, device, p.tokenizer)
    model = load_causal_lm(cfg.model, device)
    width = shared_width(cfg.model.path, logit_rows(model), cfg.teacher.path, logit_rows(teacher_model), len(p.tokenizer))
    teacher = Teacher(teacher_model, width, cfg.teacher.top_k, cfg.distill.temperature)
    backend = build_backend(model, cfg.train, p.total_steps, device, cfg.policy)
    d = cfg.distill
    beta = DIVERGENCE_BETA[d.loss]
    objective = DistillObjective(pad_id(p.tokenizer), cfg.data.max_length, cfg.data.packing, device, shares_prompts(cfg),
                                 teacher=teacher, beta=d.beta if beta is None else beta, sft_weight=d.sft_weight)
    mix = OnPolicyMix(cfg, backend, width) if d.lmbda > 0 else None
    last = train_supervised(p.run, backend, objective, p.train, p.evals, p.total_steps, step_samples=mix)
    return finish(p, backend, load_causal_lm, last)
