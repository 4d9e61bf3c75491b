"""Prompts for online RL: records -> prompt text, token ids and label; drawn in a seeded order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignkit.config.schema import DataConfig
from alignkit.data import fields
from alignkit.data.chat import render_prompt
from alignkit.data.order import epoch_order
from alignkit.data.readers import Record
from alignkit.data.tokenize import template_of
from alignkit.errors import DataError


@dataclass(frozen=True)
class Prompt:
    text: str  # what a reward function sees as the prompt
    ids: list[int]
    label: Any  # the reference answer (None when the data has none)
    source: str


def to_prompt(rec: Record, tokenizer, cfg: DataConfig) -> Prompt:
    value = fields.text_or_messages(rec, cfg.prompt_key)
    if isinstance(value, list) or cfg.chat_template:
        msgs = value if isinstance(value, list) else [{"role": "user", "content": value}]
        text = render_prompt(template_of(rec, tokenizer, cfg), msgs)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        text = value
        ids = tokenizer(value, add_special_tokens=True)["input_ids"]
    if len(ids) > cfg.max_length:
        raise DataError(f"{rec.source}: prompt has {len(ids)} tokens, more than --data.max_length {cfg.max_length}")
    return Prompt(value if isinstance(value, str) else text, list(ids), rec.data.get(cfg.label_key), rec.source)


@dataclass
class PromptStream:
    """Endless prompts: each epoch in its own seeded order; the position is (epoch, offset)."""

    prompts: list[Prompt]
    seed: int
    epoch: int = 0
    offset: int = 0

    def take(self, k: int) -> list[Prompt]:
        out: list[Prompt] = []
        while len(out) < k:
            order = epoch_order(len(self.prompts), self.seed, self.epoch)
            chunk = order[self.offset : self.offset + k - len(out)]
            out += [self.prompts[i] for i in chunk]
            self.offset += len(chunk)
            if self.offset >= len(order):
                self.epoch, self.offset = self.epoch + 1, 0
        return out
