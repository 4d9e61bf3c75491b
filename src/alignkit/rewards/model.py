"""Scoring with a reward model trained by `alignkit rm`.

Each prompt + response is tokenized exactly as in reward-model training (`data.tokenize.encode`,
plain text: prompt with special tokens, response, EOS), packed, and scored at its last token
(`models.forward.reward_scores`). With `normalize`, scores are `(r - mean) / std` with the
statistics of the training responses that `alignkit rm` saved in `reward_stats.json`, so a reward of
0 is an average training response whatever scale the model drifted to.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from alignkit.config.schema import ModelConfig
from alignkit.data.packing import pack
from alignkit.data.tokenize import encode
from alignkit.errors import ModelError
from alignkit.models.forward import reward_scores
from alignkit.models.load import REWARD_STATS_FILE, load_reward_model, load_tokenizer, resolve_device
from alignkit.models.padding import pad_id
from alignkit.rewards.base import RewardInput, RewardOutput
from alignkit.rewards.validate import RewardError, check_scores, labels_of, sample_name

log = logging.getLogger("alignkit")


@dataclass(frozen=True)
class RewardStats:
    mean: float
    std: float


def read_stats(model_path: str) -> RewardStats:
    path = Path(model_path) / REWARD_STATS_FILE
    if not path.is_file():
        raise ModelError(
            f"{path} not found: train the reward model with --rm.normalize true, or score raw with --reward.normalize false"
        )
    try:
        data = json.loads(path.read_text())
        mean, std = float(data["mean"]), float(data["std"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ModelError(
            f"{path}: expected JSON with numbers 'mean' and 'std' ({type(e).__name__}: {e})"
        ) from None
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise ModelError(f"{path}: needs a finite mean and a positive std, got mean {mean}, std {std}")
    return RewardStats(mean, std)


class ModelReward:
    """The `RewardFn` of a reward-model folder; scores `(batch,)` float32, `batch_size` samples per
    forward pass. Not thread-safe: one caller at a time (the reward server has one scoring thread)."""

    def __init__(self, path: str, normalize: bool, batch_size: int, device: str = "auto") -> None:
        self.path = path
        cfg = ModelConfig(path=path)
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(cfg)
        self.model = load_reward_model(cfg, self.device).eval()
        if not any(a.endswith("ForSequenceClassification") for a in self.model.config.architectures or []):
            log.warning("%s holds no trained reward head; its scores are from a random head", path)
        self.stats = read_stats(path) if normalize else None
        self.batch_size = batch_size
        self.max_length = getattr(self.model.config, "max_position_embeddings", None)

    def _encode(self, batch: RewardInput, i: int):
        sample = encode(
            self.tokenizer, batch.prompts[i], batch.responses[i], use_chat=False, source=self.path
        )
        if self.max_length and len(sample.input_ids) > self.max_length:
            raise RewardError(
                f"reward model {self.path}: {sample_name(batch, i)} has {len(sample.input_ids)} tokens, "
                f"more than the model's {self.max_length} positions"
            )
        return sample

    @torch.inference_mode()
    def __call__(self, batch: RewardInput) -> RewardOutput:
        n = len(labels_of(batch))
        parts = []
        for start in range(0, n, self.batch_size):
            samples = [self._encode(batch, i) for i in range(start, min(start + self.batch_size, n))]
            packed = pack(samples, pad_id(self.tokenizer)).to(self.device)
            parts.append(reward_scores(self.model, packed).cpu())
        scores = torch.cat(parts) if parts else torch.zeros(0)
        if self.stats is not None:
            scores = (scores - self.stats.mean) / self.stats.std
        return RewardOutput(check_scores(scores, batch, f"reward model {self.path}"))
