"""The policy (actor) role: a causal LM and its training backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from alignkit.algos.metric import Metric
from alignkit.algos.objective import PolicyObjective, policy_objective
from alignkit.backends.factory import build_backend
from alignkit.checkpoint.export import export_trained
from alignkit.config.rl import RLConfig
from alignkit.models.forward import causal_forward
from alignkit.models.load import load_causal_lm, load_tokenizer, resolve_device
from alignkit.models.padding import pad_id
from alignkit.workers.dispatch import dispatch
from alignkit.workers.experience import Experience
from alignkit.workers.forward_utils import gather, micro_batches, per_token
from alignkit.workers.trained import TrainedRole, step_metrics


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
        self.temperature = sampling_temperature(cfg)

    def _forward(
        self, model, mb: Experience, with_entropy: bool, entropy_grad: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return per_token(mb, lambda packed: causal_forward(model, packed, self.temperature, with_entropy, entropy_grad),
                         self.pad_id, self.device)

    @dispatch("rows")
    @torch.no_grad()
    def logprobs(self, exp: Experience) -> torch.Tensor:
        """`(n, L)` log-probs of every token under the current policy (before this step's update)."""
        self.model.eval()
        return gather(exp, lambda mb: self._forward(self.model, mb, False)[0], self.cfg.train)

    @dispatch("train")
    def update(self, exp: Experience, obj: PolicyObjective, denominator: float) -> dict[str, Metric]:
        """One optimizer step on the mini-batch `exp`, or on this worker's shard of it (data parallel),
        micro-batched. `denominator`: the whole mini-batch's count for `obj.agg` (`loss_count`), which
        every micro-batch's loss sum is divided by, so the accumulated gradients (summed over the
        workers) are exactly those of one pass over the mini-batch. Returns partial metrics."""
        parts = []
        for _, mb in micro_batches(exp, self.cfg.train):

            def loss_fn(model, mb: Experience):
                logp, ent = self._forward(model, mb, with_entropy=True, entropy_grad=bool(obj.entropy_coef))
                dev = self.device
                terms, metrics = policy_objective(
                    obj, logp, _to(mb.old_logp, dev), mb.advantages.to(dev), mb.response_mask.to(dev),
                    ref_logp=_to(mb.ref_logp, dev), entropy=ent, is_weight=_to(mb.is_weight, dev),
                )
                return terms.total / max(denominator, 1.0), metrics

            parts.append(self.backend.forward_backward(mb, loss_fn))
        return step_metrics(parts, self.backend.step())

    def weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full weights (LoRA merged) for the rollout engine (gathered from the shards of a sharded
        backend: collective, every worker of the role iterates)."""
        return self.backend.full_weights()

    @dispatch("all")
    def export(self, path: str) -> None:
        """The final model in Hugging Face format (LoRA merged), with the tokenizer. Collective under a
        sharded backend: every worker gathers the full weights, the first writes them."""
        export_trained(self.backend, load_causal_lm, self.cfg.model, load_tokenizer(self.cfg.model), Path(path))


def _to(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device)
