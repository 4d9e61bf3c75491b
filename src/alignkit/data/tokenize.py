"""Records -> token ids and loss masks, for SFT samples and preference pairs.

Plain text: `prompt` is tokenized with the tokenizer's special tokens (BOS where it adds one), the
response without, then EOS is appended; the loss covers the response and EOS. Chat (a `messages`
list, a prompt or response given as a list, or `data.chat_template true`): the tokenizer's template
renders the conversation (data/chat.py); the loss covers every assistant turn of a `messages` list,
and the response's turns of a prompt + response (SFT, pairs, KTO), the prompt's turns being context.

Truncation rule: a sample longer than `data.max_length` keeps its first `max_length` tokens (the end
of the response is cut). A sample left with no response token is dropped. Both are counted.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

from tqdm import tqdm

from alignkit.config.schema import DataConfig
from alignkit.data import fields
from alignkit.data.chat import Template, assistant_turns, chat_rows, tokenize_spans
from alignkit.data.fields import Message
from alignkit.data.readers import Record
from alignkit.data.samples import (
    SampleGroup,
    TokenizedPair,
    TokenizedSample,
    TokenizedUnpaired,
    TokenizeStats,
)
from alignkit.errors import DataError

log = logging.getLogger("alignkit")


def template_of(rec: Record, tokenizer, cfg: DataConfig) -> Template:
    """How `rec` renders through the chat template: the run's template variables and the record's tools."""
    return Template(tokenizer, rec.source, cfg.chat_template_kwargs, fields.tools_value(rec, cfg.tools_key))


def encode(
    tokenizer, prompt: str | list[Message], response: str | list[Message], use_chat: bool, source: str,
    template: Template | None = None,
) -> TokenizedSample:
    """One prompt + response (text, or chat lists) -> ids and the response mask, untruncated. In chat
    form the response's assistant turns are trained and the prompt's are context."""
    if isinstance(prompt, list) or isinstance(response, list) or use_chat:
        head = prompt if isinstance(prompt, list) else ([{"role": "user", "content": prompt}] if prompt else [])
        tail = response if isinstance(response, list) else [{"role": "assistant", "content": response}]
        rows = _rows(template or Template(tokenizer, source), head + tail, assistant_turns(head + tail, len(head)))
        if len(rows) > 1:
            raise DataError(
                f"{source}: the chat template renders the response's earlier assistant turns differently once "
                "later ones follow, so the response cannot train as one sequence; give it as separate records"
            )
        return rows[0]
    p = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return TokenizedSample(list(p) + list(r), [0] * len(p) + [1] * len(r), source)


def _rows(template: Template, messages: list[Message], trained: list[int]) -> list[TokenizedSample]:
    out = []
    for text, spans in chat_rows(template, messages, trained):
        ids, mask = tokenize_spans(template.tokenizer, text, spans)
        out.append(TokenizedSample(ids, mask, template.source))
    return out


def split_response(messages: list[Message]) -> tuple[list[Message], list[Message]]:
    """A whole conversation -> (prompt, response): the response is its closing assistant turns."""
    cut = len(messages)
    while cut and messages[cut - 1]["role"] == "assistant":
        cut -= 1
    return messages[:cut], messages[cut:]


def truncate(sample: TokenizedSample, max_length: int, stats: TokenizeStats) -> TokenizedSample | None:
    """Apply the truncation rule; None when no response token survives."""
    if len(sample.input_ids) <= max_length:
        return sample
    stats.truncated += 1
    mask = sample.loss_mask[:max_length]
    if not any(mask):
        stats.dropped_empty_after_truncation += 1
        return None
    return TokenizedSample(sample.input_ids[:max_length], mask, sample.source)


def _progress(records: list[Record], desc: str) -> Iterable[Record]:
    return tqdm(records, desc=desc, unit="rec", disable=None if len(records) > 5000 else True, leave=False)


def sft_sample(rec: Record, tokenizer, cfg: DataConfig) -> SampleGroup:
    """An SFT record's rows, untruncated: a chat list trains every assistant turn (data/chat.py rule),
    prompt + response the response."""
    template = template_of(rec, tokenizer, cfg)
    if cfg.messages_key in rec.data:
        msgs = fields.messages_value(rec, cfg.messages_key, rec.data[cfg.messages_key])
        template = dataclasses.replace(template, key=cfg.messages_key)
        return SampleGroup(tuple(_rows(template, msgs, assistant_turns(msgs))), rec.source)
    if cfg.prompt_key not in rec.data and cfg.response_key not in rec.data:
        fields.require(rec, cfg.messages_key)  # names the chat field, the likelier intent
    prompt = fields.text_or_messages(rec, cfg.prompt_key)
    response = fields.text_field(rec, cfg.response_key)
    return SampleGroup((encode(tokenizer, prompt, response, cfg.chat_template, rec.source, template),), rec.source)


def tokenize_sft(records: list[Record], tokenizer, cfg: DataConfig) -> tuple[list[SampleGroup], TokenizeStats]:
    stats = TokenizeStats(records=len(records))
    out = []
    for rec in _progress(records, "tokenize"):
        group = sft_sample(rec, tokenizer, cfg)
        stats.multi_row_records += len(group.samples) > 1
        rows = [s for s in (truncate(s, cfg.max_length, stats) for s in group.samples) if s is not None]
        if rows:
            out.append(SampleGroup(tuple(rows), rec.source))
    stats.kept = len(out)
    return out, stats


def pair_sample(rec: Record, tokenizer, cfg: DataConfig) -> TokenizedPair | None:
    """A pair record -> both sides tokenized; None (counted by the caller) when chosen == rejected."""
    chosen = fields.text_or_messages(rec, cfg.chosen_key)
    rejected = fields.text_or_messages(rec, cfg.rejected_key)
    if chosen == rejected:
        return None
    margin = fields.number_field(rec, cfg.margin_key, 0.0)
    template = template_of(rec, tokenizer, cfg)
    if isinstance(chosen, list) and cfg.prompt_key not in rec.data:
        # Whole conversations carry their own prompt; each side's response is its closing assistant turns.
        sides = [encode(tokenizer, *split_response(m), True, rec.source, template) for m in (chosen, rejected)]
        return TokenizedPair(sides[0], sides[1], margin, rec.source)
    prompt = fields.text_or_messages(rec, cfg.prompt_key)
    c = encode(tokenizer, prompt, chosen, cfg.chat_template, rec.source, template)
    r = encode(tokenizer, prompt, rejected, cfg.chat_template, rec.source, template)
    return TokenizedPair(c, r, margin, rec.source)


def tokenize_pairs(records: list[Record], tokenizer, cfg: DataConfig) -> tuple[list[TokenizedPair], TokenizeStats]:
    stats = TokenizeStats(records=len(records))
    out = []
    for rec in _progress(records, "tokenize"):
        pair = pair_sample(rec, tokenizer, cfg)
        if pair is None:
            stats.skipped_identical_pairs += 1
            log.warning("%s: chosen equals rejected; pair skipped", rec.source)
            continue
        c = truncate(pair.chosen, cfg.max_length, stats)
        r = truncate(pair.rejected, cfg.max_length, stats)
        if c is None or r is None:
            continue
        out.append(TokenizedPair(c, r, pair.margin, pair.source))
    stats.kept = len(out)
    return out, stats


def _label(rec: Record, key: str) -> bool:
    v = fields.require(rec, key)
    if not isinstance(v, bool):
        raise DataError(f"{rec.source}: field '{key}' must be true or false, got {type(v).__name__}")
    return v


def tokenize_unpaired(
    records: list[Record], tokenizer, cfg: DataConfig
) -> tuple[list[TokenizedUnpaired], TokenizeStats]:
    """KTO records (prompt, completion, boolean label). Record i's KL sample pairs its completion with
    record (i + 1)'s prompt: a mismatched pair, as the KTO paper's reference point needs."""
    stats = TokenizeStats(records=len(records))
    prompts = [fields.text_or_messages(r, cfg.prompt_key) for r in records]
    templates = [template_of(r, tokenizer, cfg) for r in records]
    out = []
    for i, rec in enumerate(_progress(records, "tokenize")):
        completion = fields.text_field(rec, cfg.completion_key)
        label = _label(rec, cfg.label_key)
        s = truncate(encode(tokenizer, prompts[i], completion, cfg.chat_template, rec.source, templates[i]),
                     cfg.max_length, stats)
        j = (i + 1) % len(records)  # the KL sample is the completion under record j's prompt, tools and all
        kl = truncate(encode(tokenizer, prompts[j], completion, cfg.chat_template, rec.source, templates[j]),
                      cfg.max_length, stats)
        if s is not None and kl is not None:
            out.append(TokenizedUnpaired(s, kl, label, rec.source))
    stats.kept = len(out)
    return out, stats
