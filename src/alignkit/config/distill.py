"""Configuration of knowledge distillation: the teacher role and `alignkit distill`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from alignkit.config.schema import RunConfig


@dataclass(frozen=True)
class TeacherConfig:
    """The frozen teacher: a local Hugging Face causal LM with the student's tokenizer."""

    path: str = ""
    """Teacher model folder; its tokenizer must map every token to the same id as the student's."""
    top_k: int = 0
    """Keep the teacher's k most likely tokens per position plus one bucket for the rest of the
    vocabulary (bounds memory; README: Distillation); 0 compares full distributions."""
    dtype: Literal["", "float32", "bfloat16", "float16"] = ""
    """Teacher parameter dtype; empty takes --model.dtype."""


@dataclass(frozen=True)
class DistillOptions:
    """The distillation objective (GKD, Agarwal et al. 2024)."""

    loss: Literal["forward_kl", "reverse_kl", "jsd"] = "jsd"
    """Per-token divergence: forward_kl KL(teacher||student), reverse_kl KL(student||teacher), or jsd,
    GKD's generalised Jensen-Shannon divergence with --distill.beta."""
    beta: float = 0.5
    """jsd interpolation in [0, 1]: 0 is forward_kl, 1 is reverse_kl (GKD's limits, as TRL)."""
    temperature: float = 1.0
    """Both distributions are softmax(logits / temperature); on-policy samples are drawn at it too."""
    lmbda: float = 0.0
    """GKD's lambda: the probability that a step trains on the student's own responses to the step's
    prompts instead of the dataset's (0: dataset responses only)."""
    max_new_tokens: int = 128
    """Longest on-policy response (--distill.lmbda > 0)."""
    sft_weight: float = 0.0
    """Add the negative log-likelihood of the targets with this weight."""


@dataclass(frozen=True)
class DistillConfig(RunConfig):
    """Knowledge distillation from a frozen teacher on SFT data (prompt/response or messages), with
    GKD's on-policy mix."""

    output_dir: str = "runs/distill"
    """Run directory: config.yaml, metrics.jsonl, checkpoints/, final/."""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    """The teacher."""
    distill: DistillOptions = field(default_factory=DistillOptions)
    """The distillation objective."""
