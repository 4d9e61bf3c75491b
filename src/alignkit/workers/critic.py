"""The critic role (PPO): a value model, the LM body with a scalar head read at every token."""

from __future__ import annotations

import dataclasses

import torch

from alignkit.algos.metric import Metric, prefixed
from alignkit.algos.objective import ValueObjective, value_objective
from alignkit.backends.factory import build_backend
from alignkit.config.rl import RLConfig
from alignkit.config.schema import LoraConfig, ModelConfig
from alignkit.models.forward import token_values
from alignkit.models.load import load_reward_model, load_tokenizer, resolve_device
from alignkit.models.padding import pad_id
from alignkit.workers.dispatch import dispatch
from alignkit.workers.experience import Experience
from alignkit.workers.forward_utils import gather, micro_batches, per_token
from alignkit.workers.trained import TrainedRole, step_metrics


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

    def _values(self, model, mb: Experience) -> torch.Tensor:
        return per_token(mb, lambda packed: token_values(model, packed), self.pad_id, self.device)

    @dispatch("rows")
    @torch.no_grad()
    def values(self, exp: Experience) -> torch.Tensor:
        self.model.eval()
        return gather(exp, lambda mb: self._values(self.model, mb), self.cfg.train)

    @dispatch("train")
    def update(self, exp: Experience, obj: ValueObjective, denominator: float) -> dict[str, Metric]:
        """One optimizer step; `denominator` and the metrics as in `PolicyWorker.update`."""
        parts = []
        for _, mb in micro_batches(exp, self.cfg.train):

            def loss_fn(model, mb: Experience):
                dev = self.device
                terms, metrics = value_objective(obj, self._values(model, mb), mb.values.to(dev), mb.returns.to(dev),
                                                 mb.response_mask.to(dev))
                return terms.total / max(denominator, 1.0), metrics

            parts.append(self.backend.forward_backward(mb, loss_fn))
        return prefixed("critic/", step_metrics(parts, self.backend.step()))
