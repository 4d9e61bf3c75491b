"""The reference role: a frozen causal LM that scores log-probs for the KL term."""

from __future__ import annotations

import torch

from alignkit.config.rl import RLConfig
from alignkit.models.forward import causal_forward
from alignkit.models.load import load_tokenizer, resolve_device
from alignkit.models.padding import pad_id
from alignkit.models.reference import load_frozen
from alignkit.workers.dispatch import dispatch
from alignkit.workers.experience import Experience
from alignkit.workers.forward_utils import gather, per_token
from alignkit.workers.policy import sampling_temperature


class ReferenceWorker:
    def __init__(self, cfg: RLConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.train.device)
        self.pad_id = pad_id(load_tokenizer(cfg.model))
        self.model = self.load(cfg)
        self.temperature = sampling_temperature(cfg)

    def load(self, cfg: RLConfig) -> torch.nn.Module:
        """The frozen model this role scores with: the starting policy, or --ref.path."""
        return load_frozen(cfg.model, cfg.ref, self.device)

    @dispatch("rows")
    @torch.no_grad()
    def logprobs(self, exp: Experience) -> torch.Tensor:
        def fn(mb: Experience) -> torch.Tensor:
            return per_token(mb, lambda packed: causal_forward(self.model, packed, self.temperature)[0],
                             self.pad_id, self.device)

        return gather(exp, fn, self.cfg.train)
