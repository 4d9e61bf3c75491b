"""Preference optimisation on pairs: DPO, cDPO, IPO, SimPO, ORPO, RPO (`alignkit dpo`).

Chosen and rejected sides of a micro-batch go through the policy in one packed forward, the pair's
prompt once for both sides (data/packing.py) unless `--data.share_prompt false` or a varlen
attention kernel (flash-attention reads sample boundaries from position ids, which cannot express a
shared prompt). The loss is picked from a table (algorithms are data): each name maps to a loss of
algos/losses/preference.py and the hyper-parameters it uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from alignkit.algos.losses.preference import PreferenceConfig, PreferenceInput, preference_loss
from alignkit.backends.base import LossFn
from alignkit.backends.factory import build_backend
from alignkit.config.schema import DPOConfig
from alignkit.data.packing import PackedBatch, PairPacker
from alignkit.data.samples import TokenizedPair
from alignkit.data.tokenize import tokenize_pairs
from alignkit.errors import ConfigError
from alignkit.models.forward import sequence_logps
from alignkit.models.load import load_causal_lm
from alignkit.models.reference import Reference, load_frozen, needs_own_model, reference_per_item
from alignkit.trainers.supervised.launch import launch
from alignkit.trainers.supervised.loop import train_supervised
from alignkit.trainers.supervised.prepare import finish, pair_packer, prepare


@dataclass(frozen=True)
class LossSpec:
    base: str  # key of PREFERENCE_LOSSES
    uses_ref: bool
    default_beta: float


LOSSES: dict[str, LossSpec] = {
    "dpo": LossSpec("dpo", True, 0.1),
    "cdpo": LossSpec("dpo", True, 0.1),
    "rpo": LossSpec("dpo", True, 0.1),
    "ipo": LossSpec("ipo", True, 0.1),
    "simpo": LossSpec("simpo", False, 2.0),
    "orpo": LossSpec("orpo", False, 0.1),
}


def resolve_loss(cfg: DPOConfig) -> tuple[LossSpec, PreferenceConfig]:
    spec, o = LOSSES[cfg.loss], cfg.dpo
    given = [f for f, v in (("--ref.path", cfg.ref.path), ("--ref.precompute", cfg.ref.precompute)) if v]
    if not spec.uses_ref and given:
        raise ConfigError(f"--loss {cfg.loss} is reference-free, so {given[0]} would be ignored: drop it, or use a "
                          "loss with a reference (dpo, cdpo, ipo, rpo)")
    return spec, PreferenceConfig(
        beta=o.beta if o.beta is not None else spec.default_beta,
        label_smoothing=o.label_smoothing if cfg.loss == "cdpo" else 0.0,
        simpo_gamma=o.simpo_gamma,
        orpo_lambda=o.orpo_lambda,
        nll_weight=o.nll_weight + (o.rpo_alpha if cfg.loss == "rpo" else 0.0),
    )


@dataclass(frozen=True)
class RefPair:
    """A pair with its (chosen, rejected) reference log-probs when they were precomputed."""

    pair: TokenizedPair
    ref: tuple[float, float] | None = None


@dataclass(frozen=True)
class PairBatch:
    """Chosen sides are samples 0..n-1 of `packed`, rejected n..2n-1; `ref` `(2n,)` when precomputed.
    `tokens`: the pairs' tokens (`TokenizedPair.n_tokens`)."""

    packed: PackedBatch
    ref: torch.Tensor | None
    tokens: int


@dataclass(frozen=True)
class PairwiseObjective:
    spec: LossSpec
    pref: PreferenceConfig
    reference: Reference | None
    packer: PairPacker

    def collate(self, items: Sequence[RefPair]) -> PairBatch:
        ref = None
        if items[0].ref is not None:
            ref = torch.tensor([i.ref[0] for i in items] + [i.ref[1] for i in items], device=self.packer.device)
        return PairBatch(self.packer([i.pair for i in items]), ref, sum(i.pair.n_tokens for i in items))

    def denominator(self, items: Sequence[RefPair]) -> float:
        return float(len(items))

    def loss_fn(self, denom: float) -> LossFn:
        def fn(model, b: PairBatch):
            n = b.packed.n_samples // 2
            logps, lens = sequence_logps(model, b.packed)
            ref = b.ref
            if ref is None and self.spec.uses_ref:
                ref = self.reference.logps(b.packed)
            inp = PreferenceInput(
                logps[:n], logps[n:], None if ref is None else ref[:n], None if ref is None else ref[n:], lens[:n], lens[n:]
            )
            loss, metrics = preference_loss(self.spec.base, inp, self.pref)
            scale = n / denom  # batch means -> shares of the step mean (see trainers/supervised/loop.py)
            return loss * scale, {k: v * scale for k, v in metrics.items()}

        return fn

    def n_tokens(self, b: PairBatch) -> int:
        return b.tokens

    def sample_tokens(self, item: RefPair) -> int:
        return item.pair.n_tokens


def run_dpo(cfg: DPOConfig) -> dict[str, float]:
    """Train per `cfg` (in this process, or data parallel: trainers/supervised/launch.py)."""
    return launch(cfg, train_dpo)


def train_dpo(cfg: DPOConfig) -> dict[str, float]:
    """One worker's part of `run_dpo`. Data parallel, each worker keeps its own whole reference model."""
    spec, pref = resolve_loss(cfg)
    p = prepare(cfg, tokenize_pairs)
    micro, device = cfg.train.micro_batch_size, p.run.device
    packer = pair_packer(cfg, p)
    reference, model = None, None
    if spec.uses_ref and needs_own_model(cfg.ref, cfg.model.lora):
        reference = Reference(model=load_frozen(cfg.model, cfg.ref, device))
    if reference is None and spec.uses_ref:
        model = load_causal_lm(cfg.model, device)
        reference = Reference(policy=model)
    # Reference first, alone: it is freed before the policy is loaded when it is a separate model.
    refs = reference_per_item(reference, (p.train, p.evals), packer, micro, spec.uses_ref and cfg.ref.precompute)
    model = model or load_causal_lm(cfg.model, device)
    backend = build_backend(model, cfg.train, p.total_steps, device, cfg.policy)
    objective = PairwiseObjective(spec, pref, reference, packer)
    train, evals = ([RefPair(x, r) for x, r in zip(g, rs, strict=True)] for g, rs in zip((p.train, p.evals), refs, strict=True))
    last = train_supervised(p.run, backend, objective, train, evals, p.total_steps)
    return finish(p, backend, load_causal_lm, last)
