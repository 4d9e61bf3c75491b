"""The policy (actor) role: a causal LM and its training backend."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import torch

from alignkit.algos.aggregate import micro_denom
from alignkit.algos.objective import PolicyObjective, policy_objective
from alignkit.backends.distributed import add_metrics
from alignkit.backends.factory import build_backend
from alignkit.checkpoint.export import export_trained
from alignkit.config.rl import RLConfig
from alignkit.data.packing import pack_rows, unpack
from alignkit.models.forward import causal_forward
from alignkit.models.load import load_causal_lm, load_tokenizer, resolve_device
from alignkit.models.padding import pad_id
from alignkit.workers.experience import Experience, StepTotals
from alignkit.workers.forward_utils import gather, micro_batches
from alignkit.workers.trained import TrainedRole


def capacity(cfg: RLConfig) -> int:
    """Tokens per packed row; 0 packs each micro-batch to its own longest sequence, so padding is
    bounded by the spread of lengths. Rows as wide as the config's limits (prompt + full response)
    were mostly one sequence padded to the width of a two-sequence row: 1.65 token slots per real
    token in bench/bench_grpo.py."""
    return 0


def sampling_temperature(cfg: RLConfig) -> float:
    # Log-probs are taken under the distribution responses were sampled from (temperature 0 is greedy:
    # its log-probs are those of temperature 1).
    return cfg.rollout.temperature or 1.0


class PolicyWorker(TrainedRole):
    def __init__(self, cfg: RLConfig, total_optim_steps: int):
        self.cfg = cfg
        self.device = resolve_device(cfg.train.device)
        self.pad_id = pad_id(load_tokenizer(cfg.model))
        self.model = load_causal_lm(cfg.model, self.device)
        self.backend = build_backend(self.model, cfg.train, total_optim_steps, self.device, cfg.policy)
        self.capacity = capacity(cfg)
        self.temperature = sampling_temperature(cfg)

    def _forward(
        self, model, mb: Experience, with_entropy: bool, entropy_grad: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        packed, index = pack_rows(mb.input_ids, mb.lengths, self.pad_id, self.capacity)
        logp, ent = causal_forward(model, packed.to(self.device), self.temperature, with_entropy, entropy_grad)
        return unpack(logp, index), None if ent is None else unpack(ent, index)

    @torch.no_grad()
    def logprobs(self, exp: Experience) -> torch.Tensor:
        """`(n, L)` log-probs of every token under the current policy (before this step's update)."""
        self.model.eval()
        return gather(exp, lambda mb: self._forward(self.model, mb, False)[0], self.cfg.train)

    def update(self, exp: Experience, obj: PolicyObjective, totals: StepTotals | None = None) -> dict[str, float]:
        """One optimizer step on the mini-batch `exp` (micro-batched, exact accumulation). `totals`: the
        counts of the whole mini-batch when `exp` is this worker's shard of it (data parallel); the
        metrics are then this worker's share of the step's, and the workers' metrics add up."""
        step_tokens, step_seqs = dataclasses.astuple(totals or exp.totals())
        max_len = float(self.cfg.rollout.max_new_tokens)
        metrics: dict[str, float] = {}
        for _, mb in micro_batches(exp, self.cfg.train):
            mb_mask = mb.response_mask
            denom = micro_denom(obj.agg, step_tokens, step_seqs, float((mb_mask.sum(-1) > 0).sum()), max_len)
            share = float(mb_mask.sum()) / max(step_tokens, 1.0)

            def loss_fn(model, mb: Experience, denom=denom, share=share):
                logp, ent = self._forward(model, mb, with_entropy=True, entropy_grad=bool(obj.entropy_coef))
                dev = self.device
                loss, m = policy_objective(
                    obj, logp, _to(mb.old_logp, dev), mb.advantages.to(dev), mb.response_mask.to(dev), denom,
                    ref_logp=_to(mb.ref_logp, dev), entropy=ent, is_weight=_to(mb.is_weight, dev),
                )
                # pg_loss is already this micro-batch's part of the step's loss (global denominator);
                # the other metrics are means, weighted by tokens so that the parts add up.
                return loss, {k: v if k == "pg_loss" else v * share for k, v in m.items()}

            add_metrics(metrics, self.backend.forward_backward(mb, loss_fn))
        metrics |= self.backend.step()
        return metrics

    def weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full weights (LoRA merged) for the rollout engine (gathered from the shards of a sharded
        backend: collective, every worker of the role iterates)."""
        return self.backend.full_weights()

    def export(self, path: str) -> None:
        """The final model in Hugging Face format (LoRA merged), with the tokenizer. Collective under a
        sharded backend: every worker gathers the full weights, the first writes them."""
        export_trained(self.backend, load_causal_lm, self.cfg.model, load_tokenizer(self.cfg.model), Path(path))


def _to(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device)
