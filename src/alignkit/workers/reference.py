"""The reference role: a frozen causal LM that scores log-probs for the KL term."""

from __future__ import annotations

import torch

from alignkit.config.rl import RLConfig
from alignkit.data.packing import pack_rows, unpack
from alignkit.models.forward import causal_forward
from alignkit.models.load import load_tokenizer, resolve_device
from alignkit.models.padding import pad_id
from alignkit.models.reference import load_frozen
from alignkit.workers.experience import Experience
from alignkit.workers.forward_utils import gather
from alignkit.workers.policy import capacity, sampling_temperature


class ReferenceWorker:
    def __init__(self, cfg: RLConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.train.device)
        self.pad_id = pad_id(load_tokenizer(cfg.model))
        self.model = load_frozen(cfg.model, cfg.ref, self.device)
        self.capacity = capacity(cfg)
        self.temperature = sampling_temperature(cfg)

    @torch.no_grad()
    def logprobs(self, exp: Experience) -> torch.Tensor:
        def fn(mb: Experience) -> torch.Tensor:
            packed, index = pack_rows(mb.input_ids, mb.lengths, self.pad_id, self.capacity)
            return unpack(causal_forward(self.model, packed.to(self.device), self.temperature)[0], index)

        return gather(exp, fn, self.cfg.train)
