"""The policy (actor) role: a causal LM and its training backend."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from alignkit.algos.aggregate import micro_denom
from alignkit.algos.objective import PolicyObjective, policy_objective
from alignkit.backends.factory import build_backend
from alignkit.config.rl import RLConfig
from alignkit.data.packing import pack_rows, unpack
from alignkit.models.forward import causal_forward
from alignkit.models.load import load_causal_lm, load_tokenizer, resolve_device
from alignkit.models.weights import full_weights
from alignkit.workers.experience import Experience
from alignkit.workers.forward_utils import gather, micro_batches


def capacity(cfg: RLConfig) -> int:
    """Tokens per packed row: a prompt of up to data.max_length plus a full response."""
    return cfg.data.max_length + cfg.rollout.max_new_tokens


def sampling_temperature(cfg: RLConfig) -> float:
    # Log-probs are taken under the distribution responses were sampled from (temperature 0 is greedy:
    # its log-probs are those of temperature 1).
    return cfg.rollout.temperature or 1.0


class PolicyWorker:
    def __init__(self, cfg: RLConfig, total_optim_steps: int):
        self.cfg = cfg
        self.device = resolve_device(cfg.train.device)
        self.pad_id = load_tokenizer(cfg.model).pad_token_id
        self.model = load_causal_lm(cfg.model, self.device)
        self.backend = build_backend(self.model, cfg.train, total_optim_steps, self.device)
        self.capacity = capacity(cfg)
        self.temperature = sampling_temperature(cfg)

    def _forward(self, model, mb: Experience, with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        packed, index = pack_rows(mb.input_ids, mb.lengths, self.pad_id, self.capacity)
        logp, ent = causal_forward(model, packed.to(self.device), self.temperature, with_entropy)
        return unpack(logp, index), None if ent is None else unpack(ent, index)

    @torch.no_grad()
    def logprobs(self, exp: Experience) -> torch.Tensor:
        """`(n, L)` log-probs of every token under the current policy (before this step's update)."""
        self.model.eval()
        return gather(exp, lambda mb: self._forward(self.model, mb, False)[0], self.cfg.train.micro_batch_size)

    def update(self, exp: Experience, obj: PolicyObjective) -> dict[str, float]:
        """One optimizer step on the mini-batch `exp` (micro-batched, exact accumulation)."""
        mask = exp.response_mask
        step_tokens = float(mask.sum())
        step_seqs = float((mask.sum(-1) > 0).sum())
        max_len = float(self.cfg.rollout.max_new_tokens)
        metrics: dict[str, float] = {}
        for mb in micro_batches(exp, self.cfg.train.micro_batch_size):
            mb_mask = mb.response_mask
            denom = micro_denom(obj.agg, step_tokens, step_seqs, float((mb_mask.sum(-1) > 0).sum()), max_len)
            share = float(mb_mask.sum()) / max(step_tokens, 1.0)

            def loss_fn(model, mb: Experience, denom=denom, share=share):
                logp, ent = self._forward(model, mb, with_entropy=True)
                if not obj.entropy_coef:
                    ent = ent.detach()
                dev = self.device
                loss, m = policy_objective(
                    obj, logp, _to(mb.old_logp, dev), mb.advantages.to(dev), mb.response_mask.to(dev), denom,
                    ref_logp=_to(mb.ref_logp, dev), entropy=ent,
                )
                return loss, {k: v * share for k, v in m.items()}  # token-weighted means over the step

            for k, v in self.backend.forward_backward(mb, loss_fn).items():
                metrics[k] = metrics.get(k, 0.0) + v
        metrics |= self.backend.step()
        return metrics

    def weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full weights (LoRA merged) for the rollout engine."""
        return full_weights(self.model)


def _to(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device)
