"""The distillation teacher: a frozen causal LM that shares the student's tokenizer and scores the
student's targets (like the reference model, models/reference.py, but with whole distributions).

Vocabulary rule: distillation compares distributions over token ids, so
1. the teacher's tokenizer (from its folder) must map every token to the same id as the student's
   (`get_vocab()` equal, added tokens included), else `check_same_tokenizer` names both folders;
2. each model needs at least one logit per tokenizer token; a model may have more (embedding rows
   padded to a round number, as Qwen2's 151936 rows for 151665 tokens): distributions are compared
   over the first `width = min(student rows, teacher rows)` ids, so padding rows that only one model
   has are left out (both sides softmax over the same `width` ids).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignkit.algos.chunked import rows_per_chunk
from alignkit.algos.losses.distill import teacher_topk
from alignkit.config.distill import TeacherConfig
from alignkit.config.schema import LoraConfig, ModelConfig
from alignkit.data.packing import PackedBatch
from alignkit.errors import ModelError
from alignkit.models.forward import causal_forward, token_logprobs
from alignkit.models.load import load_causal_lm, load_tokenizer
from alignkit.models.targets import target_logits, targets_of


def check_same_tokenizer(student_path: str, student_tok, teacher_path: str, teacher_tok) -> None:
    """Raise ModelError unless both tokenizers map every token to the same id."""
    s, t = student_tok.get_vocab(), teacher_tok.get_vocab()
    if s == t:
        return
    if len(s) != len(t):
        detail = f"the student's has {len(s)} tokens, the teacher's {len(t)}"
    else:
        tok = min((k for k in s if t.get(k) != s[k]), key=lambda k: s[k])
        where = f"id {t[tok]}" if tok in t else "missing"
        detail = f"token {tok!r} is id {s[tok]} in the student's and {where} in the teacher's"
    raise ModelError(f"--teacher.path {teacher_path} and --model.path {student_path} do not share a tokenizer "
                     f"({detail}); distillation compares distributions over token ids")


def logit_rows(model) -> int:
    """How many logits the model gives per position (its output embedding's rows)."""
    return int(model.config.get_text_config().vocab_size)


def shared_width(student_path: str, student_rows: int, teacher_path: str, teacher_rows: int, n_tokens: int) -> int:
    """The ids both distributions are compared over: `min(student_rows, teacher_rows)`, which must
    cover the tokenizer's `n_tokens`."""
    for path, rows in ((student_path, student_rows), (teacher_path, teacher_rows)):
        if rows < n_tokens:
            raise ModelError(f"{path} has {rows} output embedding rows, fewer than the tokenizer's {n_tokens} tokens")
    return min(student_rows, teacher_rows)


def load_teacher(student: ModelConfig, teacher: TeacherConfig, device: torch.device, student_tok):
    """The teacher as a frozen model in eval mode, after checking its tokenizer against the student's
    (`student_tok`); dtype `teacher.dtype`, or the student's."""
    cfg = ModelConfig(path=teacher.path, dtype=teacher.dtype or student.dtype,
                      attn_implementation=student.attn_implementation, lora=LoraConfig(rank=0))
    check_same_tokenizer(student.tokenizer_path or student.path, student_tok, teacher.path, load_tokenizer(cfg))
    model = load_causal_lm(cfg, device).eval()
    model.requires_grad_(False)
    return model


@dataclass(frozen=True)
class TeacherTargets:
    """The teacher at the n targets of a packed batch (order of `models/targets.targets_of`), under
    softmax(logits / temperature) over the shared `width` ids. `target_logprobs` `(n,)`: the log-prob of
    each target. Full mode: `logits` `(n, width)` (model dtype). Top-k mode: `topk_ids` `(n, k)` and
    `topk_logprobs` `(n, k + 1)`, the k ids' log-probs then the tail's (algos/losses/distill.py)."""

    target_logprobs: torch.Tensor
    logits: torch.Tensor | None = None
    topk_ids: torch.Tensor | None = None
    topk_logprobs: torch.Tensor | None = None


@dataclass(frozen=True)
class Teacher:
    """A frozen teacher model scoring at `temperature`, over the first `width` ids, keeping its `top_k`
    most likely ids per position (0: its full distribution)."""

    model: torch.nn.Module
    width: int
    top_k: int = 0
    temperature: float = 1.0

    @torch.no_grad()
    def score(self, batch: PackedBatch) -> TeacherTargets:
        """The teacher at the targets of `batch`; top-k and target log-probs are computed a chunk of
        rows at a time, so only the `(n, width)` logits (full mode) outlive the call."""
        logits = target_logits(self.model, batch, self.width)
        targets = targets_of(batch).ids
        step = rows_per_chunk(self.width)
        chunks = [(logits[i : i + step], targets[i : i + step]) for i in range(0, max(len(logits), 1), step)]
        target_lp = torch.cat([token_logprobs(lg, tg, self.temperature) for lg, tg in chunks])
        if not self.top_k:
            return TeacherTargets(target_lp, logits=logits)
        ids, lps = zip(*(teacher_topk(lg, self.top_k, self.temperature) for lg, _ in chunks), strict=True)
        return TeacherTargets(target_lp, topk_ids=torch.cat(ids), topk_logprobs=torch.cat(lps))

    @torch.no_grad()
    def token_logprobs(self, batch: PackedBatch) -> torch.Tensor:
        """`(rows, seq)` log-probs of every token of `batch` at `temperature`, over the teacher's whole
        vocabulary (position 0 of a sample carries garbage, as models/forward.py `causal_forward`): what
        on-policy distillation's per-token advantage reads on the student's samples."""
        return causal_forward(self.model, batch, self.temperature)[0]
