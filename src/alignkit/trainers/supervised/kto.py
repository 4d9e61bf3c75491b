"""KTO on unpaired data (`alignkit kto`): prompt, completion, boolean label (Ethayarajh et al. 2024).

The reference point z0 is the batch KL estimate of the paper: each sample's completion is also
scored under another record's prompt (a mismatched pair, data/tokenize.py), by the policy without
gradient and by the reference, per micro-batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from alignkit.algos.losses.preference import kto_kl_ref_point, kto_loss
from alignkit.backends.base import LossFn
from alignkit.backends.distributed import gather_values
from alignkit.backends.factory import build_backend
from alignkit.config.schema import KTOConfig
from alignkit.data.packing import PackedBatch, pack
from alignkit.data.samples import TokenizedUnpaired
from alignkit.data.tokenize import tokenize_unpaired
from alignkit.models.forward import sequence_logps
from alignkit.models.load import load_causal_lm
from alignkit.models.padding import pad_id
from alignkit.models.reference import Reference, load_frozen, needs_own_model, reference_per_item
from alignkit.trainers.supervised.launch import launch
from alignkit.trainers.supervised.loop import train_supervised
from alignkit.trainers.supervised.prepare import finish, prepare


@dataclass(frozen=True)
class RefUnpaired:
    item: TokenizedUnpaired
    ref: tuple[float, float] | None = None  # (matched, mismatched) when precomputed


@dataclass(frozen=True)
class KTOBatch:
    packed: PackedBatch
    kl_packed: PackedBatch
    labels: torch.Tensor
    ref: torch.Tensor | None  # (n,) matched, then (n,) mismatched


@dataclass(frozen=True)
class KTOObjective:
    beta: float
    desirable_weight: float
    undesirable_weight: float
    reference: Reference
    pad_id: int
    capacity: int
    packing: bool
    device: torch.device

    def collate(self, items: Sequence[RefUnpaired]) -> KTOBatch:
        p = pack([i.item.sample for i in items], self.pad_id, self.capacity, self.packing).to(self.device)
        kl = pack([i.item.kl_sample for i in items], self.pad_id, self.capacity, self.packing).to(self.device)
        labels = torch.tensor([i.item.label for i in items], device=self.device)
        ref = None
        if items[0].ref is not None:
            ref = torch.tensor([i.ref[0] for i in items] + [i.ref[1] for i in items], device=self.device)
        return KTOBatch(p, kl, labels, ref)

    def denominator(self, items: Sequence[RefUnpaired]) -> float:
        return float(len(items))

    def loss_fn(self, denom: float) -> LossFn:
        def fn(model, b: KTOBatch):
            n = b.labels.shape[0]
            logps, _ = sequence_logps(model, b.packed)
            with torch.no_grad():
                kl_logps, _ = sequence_logps(model, b.kl_packed)
            if b.ref is not None:
                ref, ref_kl = b.ref[:n], b.ref[n:]
            else:
                ref, ref_kl = self.reference.logps(b.packed), self.reference.logps(b.kl_packed)
            # z0 is a statistic of the whole micro-batch: data parallel, of every worker's share of it (a
            # stand-in, with its infinite denominator, adds nothing), so that it does not depend on the split.
            real = math.isfinite(denom)
            z0 = kto_kl_ref_point(gather_values(kl_logps, real), gather_values(ref_kl, real))
            loss, metrics = kto_loss(logps, ref, b.labels, z0, self.beta, self.desirable_weight, self.undesirable_weight)
            scale = n / denom
            return loss * scale, {k: v * scale for k, v in metrics.items()}

        return fn

    def n_tokens(self, b: KTOBatch) -> int:
        return b.packed.n_tokens

    def sample_tokens(self, item: RefUnpaired) -> int:
        return len(item.item.sample.input_ids) + len(item.item.kl_sample.input_ids)


def run_kto(cfg: KTOConfig) -> dict[str, float]:
    """Train per `cfg` (in this process, or data parallel: trainers/supervised/launch.py)."""
    return launch(cfg, train_kto)


def train_kto(cfg: KTOConfig) -> dict[str, float]:
    """One worker's part of `run_kto`. Data parallel, each worker keeps its own whole reference model."""
    p = prepare(cfg, tokenize_unpaired)
    d, micro, device = cfg.data, cfg.train.micro_batch_size, p.run.device
    model = None
    if needs_own_model(cfg.ref, cfg.model.lora):
        reference = Reference(model=load_frozen(cfg.model, cfg.ref, device))
    else:
        model = load_causal_lm(cfg.model, device)
        reference = Reference(policy=model)

    def both(items: Sequence[TokenizedUnpaired]) -> PackedBatch:  # item i's samples: segments i, m + i
        samples = [i.sample for i in items] + [i.kl_sample for i in items]
        return pack(samples, pad_id(p.tokenizer), d.max_length, d.packing).to(device)

    refs = reference_per_item(reference, (p.train, p.evals), both, micro, cfg.ref.precompute)
    model = model or load_causal_lm(cfg.model, device)
    backend = build_backend(model, cfg.train, p.total_steps, device, cfg.policy)
    k = cfg.kto
    objective = KTOObjective(k.beta, k.desirable_weight, k.undesirable_weight, reference,
                             pad_id(p.tokenizer), d.max_length, d.packing, device)
    train, evals = ([RefUnpaired(x, r) for x, r in zip(g, rs, strict=True)]
                    for g, rs in zip((p.train, p.evals), refs, strict=True))
    last = train_supervised(p.run, backend, objective, train, evals, p.total_steps)
    return finish(p, backend, load_causal_lm, last)
