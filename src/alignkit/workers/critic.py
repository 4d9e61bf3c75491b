"""The critic role (PPO): a value model, the LM body with a scalar head read at every token."""

from __future__ import annotations

import dataclasses

import torch

from alignkit.algos.aggregate import micro_denom
from alignkit.algos.losses.value import value_loss
from alignkit.backends.factory import build_backend
from alignkit.config.rl import RLConfig
from alignkit.config.schema import LoraConfig, ModelConfig
from alignkit.data.packing import pack_rows, unpack
from alignkit.models.forward import token_values
from alignkit.models.load import load_reward_model, load_tokenizer, resolve_device
from alignkit.models.padding import pad_id
from alignkit.workers.experience import Experience, StepTotals
from alignkit.workers.forward_utils import gather, micro_batches
from alignkit.workers.policy import capacity
from alignkit.workers.trained import TrainedRole


class CriticWorker(TrainedRole):
    def __init__(self, cfg: RLConfig, total_optim_steps: int):
        self.cfg = cfg
        self.device = resolve_device(cfg.train.device)
        self.pad_id = pad_id(load_tokenizer(cfg.model))
        # the critic reads the policy's token ids: the policy's tokenizer, wherever its weights come from
        model_cfg = ModelConfig(path=cfg.critic.path or cfg.model.path, dtype=cfg.model.dtype,
                                tokenizer_path=cfg.model.tokenizer_path or cfg.model.path,
                                attn_implementation=cfg.model.attn_implementation, lora=LoraConfig(rank=0))
        self.model = load_reward_model(model_cfg, self.device)
        train = dataclasses.replace(cfg.train, lr=cfg.critic.lr)
        self.backend = build_backend(self.model, train, total_optim_steps, self.device, cfg.policy)
        self.capacity = capacity(cfg)

    def _values(self, model, mb: Experience) -> torch.Tensor:
        packed, index = pack_rows(mb.input_ids, mb.lengths, self.pad_id, self.capacity)
        return unpack(token_values(model, packed.to(self.device)), index)

    @torch.no_grad()
    def values(self, exp: Experience) -> torch.Tensor:
        self.model.eval()
        return gather(exp, lambda mb: self._values(self.model, mb), self.cfg.train)

    def update(self, exp: Experience, clip: float | None, agg: str, totals: StepTotals | None = None) -> dict[str, float]:
        """One optimizer step; `totals` as in `PolicyWorker.update`."""
        step_tokens, step_seqs = dataclasses.astuple(totals or exp.totals())
        max_len = float(self.cfg.rollout.max_new_tokens)
        metrics: dict[str, float] = {}
        for _, mb in micro_batches(exp, self.cfg.train):
            m_mask = mb.response_mask
            denom = micro_denom(agg, step_tokens, step_seqs, float((m_mask.sum(-1) > 0).sum()), max_len)
            share = float(m_mask.sum()) / max(step_tokens, 1.0)

            def loss_fn(model, mb: Experience, denom=denom, share=share):
                dev = self.device
                v = self._values(model, mb)
                loss, m = value_loss(v, mb.values.to(dev), mb.returns.to(dev), mb.response_mask.to(dev), clip, agg, denom)
                return loss, {k: x if k == "value_loss" else x * share for k, x in m.items()}  # as in PolicyWorker

            for k, v in self.backend.forward_backward(mb, loss_fn).items():
                metrics[f"critic/{k}"] = metrics.get(f"critic/{k}", 0.0) + v
        metrics |= {f"critic/{k}": v for k, v in self.backend.step().items()}
        return metrics
