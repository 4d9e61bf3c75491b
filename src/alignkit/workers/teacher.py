"""The teacher role of on-policy distillation: the reference role's worker with the teacher's model
(`--teacher.path`, its tokenizer checked against the student's: models/teacher.py). It scores the log-probs
of the student's sampled tokens at the sampling temperature, as the reference and the policy do."""

from __future__ import annotations

import torch

from alignkit.config.rl import RLConfig
from alignkit.models.load import load_tokenizer
from alignkit.models.teacher import load_teacher
from alignkit.workers.reference import ReferenceWorker


class TeacherWorker(ReferenceWorker):
    def load(self, cfg: RLConfig) -> torch.nn.Module:
        """The frozen teacher, in --teacher.dtype (default the student's)."""
        return load_teacher(cfg.model, cfg.teacher, self.device, load_tokenizer(cfg.model))
