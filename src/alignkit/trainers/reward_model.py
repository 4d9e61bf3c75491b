"""Reward-model training: Bradley-Terry on preference pairs, a scalar head at each sample's last token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from alignkit.algos.losses.reward import FORMS, bradley_terry_loss
from alignkit.backends.base import LossFn
from alignkit.backends.factory import build_backend
from alignkit.config.schema import RMConfig
from alignkit.data.packing import PackedBatch, pack
from alignkit.data.samples import TokenizedPair
from alignkit.data.tokenize import tokenize_pairs
from alignkit.errors import ConfigError
from alignkit.models.forward import reward_scores
from alignkit.models.load import REWARD_STATS_FILE, load_reward_model
from alignkit.trainers.loop import chunks, train_supervised
from alignkit.trainers.supervised import finish, prepare


@dataclass(frozen=True)
class PairBatch:
    """Chosen sides are samples 0..n-1 of `packed`, rejected sides n..2n-1."""

    packed: PackedBatch
    margin: torch.Tensor


@dataclass(frozen=True)
class RewardObjective:
    pad_id: int
    max_length: int
    packing: bool
    form: str
    use_margin: bool
    device: torch.device

    def collate(self, pairs: Sequence[TokenizedPair]) -> PairBatch:
        samples = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        packed = pack(samples, self.pad_id, self.max_length, self.packing).to(self.device)
        return PairBatch(packed, torch.tensor([p.margin for p in pairs], device=self.device))

    def denominator(self, pairs: Sequence[TokenizedPair]) -> float:
        return float(len(pairs))

    def loss_fn(self, denom: float) -> LossFn:
        def fn(model, batch: PairBatch):
            scores = reward_scores(model, batch.packed)
            n = batch.margin.shape[0]
            margin = batch.margin if self.use_margin else None
            return bradley_terry_loss(scores[:n], scores[n:], denom, margin, self.form)

        return fn

    def n_tokens(self, batch: PairBatch) -> int:
        return batch.packed.n_tokens


@torch.no_grad()
def reward_statistics(model, objective: RewardObjective, pairs: Sequence[TokenizedPair], micro: int) -> dict[str, float]:
    """Mean and std of the trained model's scores over every training response (chosen and rejected),
    saved with the model so that online RL can score with normalised rewards."""
    model.eval()
    scores = torch.cat([reward_scores(model, objective.collate(part).packed) for part in chunks(pairs, micro)])
    return {"mean": float(scores.mean()), "std": float(scores.std()), "count": int(scores.numel())}


def run_rm(cfg: RMConfig) -> dict[str, float]:
    if cfg.rm.loss not in FORMS:
        raise ConfigError(f"--rm.loss must be one of {', '.join(FORMS)}, got '{cfg.rm.loss}'")
    p = prepare(cfg, tokenize_pairs)
    model = load_reward_model(cfg.model, p.run.device)
    backend = build_backend(model, cfg.train, p.total_steps, p.run.device)
    objective = RewardObjective(
        p.tokenizer.pad_token_id, cfg.data.max_length, cfg.data.packing, cfg.rm.loss, cfg.rm.use_margin, p.run.device
    )
    last = train_supervised(p.run, backend, objective, p.train, p.evals, p.total_steps)
    extra = {}
    if cfg.rm.normalize:
        extra[REWARD_STATS_FILE] = reward_statistics(model, objective, p.train, cfg.train.micro_batch_size)
    return finish(p, model, last, extra)
