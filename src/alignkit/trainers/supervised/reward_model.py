"""Reward-model training: Bradley-Terry on preference pairs, a scalar head at each sample's last token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from alignkit.algos.losses.reward import bradley_terry_loss
from alignkit.backends.base import LossFn
from alignkit.backends.distributed import gather_values
from alignkit.backends.factory import build_backend
from alignkit.config.schema import RMConfig
from alignkit.data.packing import PackedBatch, PairPacker
from alignkit.data.samples import TokenizedPair
from alignkit.data.tokenize import tokenize_pairs
from alignkit.models.forward import reward_scores
from alignkit.models.load import REWARD_STATS_FILE, load_reward_model
from alignkit.trainers.supervised.data_parallel import shares
from alignkit.trainers.supervised.launch import launch
from alignkit.trainers.supervised.loop import train_supervised
from alignkit.trainers.supervised.prepare import finish, pair_packer, prepare


@dataclass(frozen=True)
class PairBatch:
    """Chosen sides are samples 0..n-1 of `packed`, rejected sides n..2n-1; `tokens`: the pairs' tokens
    (`TokenizedPair.n_tokens`)."""

    packed: PackedBatch
    margin: torch.Tensor
    tokens: int


@dataclass(frozen=True)
class RewardObjective:
    packer: PairPacker
    form: str
    use_margin: bool

    def collate(self, pairs: Sequence[TokenizedPair]) -> PairBatch:
        margin = torch.tensor([p.margin for p in pairs], device=self.packer.device)
        return PairBatch(self.packer(pairs), margin, sum(p.n_tokens for p in pairs))

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
        return batch.tokens

    def sample_tokens(self, pair: TokenizedPair) -> int:
        return pair.n_tokens


@torch.no_grad()
def reward_statistics(model, objective: RewardObjective, pairs: Sequence[TokenizedPair], micro: int,
                      tokens: int = 0) -> dict[str, float]:
    """Mean and std of the trained model's scores over every training response (chosen and rejected),
    saved with the model so that online RL can score with normalised rewards. Collective in a
    data-parallel run: each worker scores its shares (a sharded forward needs every worker), and the
    statistics are those of all the scores. Micro-batches as in training (`micro` pairs, or `tokens`)."""
    model.eval()
    scores = []
    for mine, real in shares(pairs, micro, tokens, objective.sample_tokens):
        s = reward_scores(model, objective.collate(mine).packed)  # a stand-in's too: the forward is collective
        if real:
            scores.append(s)
    mine = torch.cat(scores) if scores else torch.zeros(0, device=objective.packer.device)
    every = gather_values(mine.float())
    return {"mean": float(every.mean()), "std": float(every.std()), "count": int(every.numel())}


def run_rm(cfg: RMConfig) -> dict[str, float]:
    """Train per `cfg` (in this process, or data parallel: trainers/supervised/launch.py)."""
    return launch(cfg, train_rm)


def train_rm(cfg: RMConfig) -> dict[str, float]:
    """One worker's part of `run_rm`."""
    p = prepare(cfg, tokenize_pairs)
    model = load_reward_model(cfg.model, p.run.device)
    backend = build_backend(model, cfg.train, p.total_steps, p.run.device, cfg.policy)
    objective = RewardObjective(pair_packer(cfg, p), cfg.rm.loss, cfg.rm.use_margin)
    last = train_supervised(p.run, backend, objective, p.train, p.evals, p.total_steps)
    extra = {}
    if cfg.rm.normalize:
        extra[REWARD_STATS_FILE] = reward_statistics(model, objective, p.train, cfg.train.micro_batch_size,
                                                       cfg.train.micro_batch_tokens)
    return finish(p, backend, load_reward_model, last, extra)
