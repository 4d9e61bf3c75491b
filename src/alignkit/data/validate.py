"""Record checks that run before any model is loaded, and the character cut that keeps a huge record
cheap. Every error names the file, line and field.

The character cut: a text field longer than `char_limit(tokenizer, max_length)` characters is cut to
that length before it is tokenised. The limit is `(max_length + CUT_MARGIN) * B`, where B is the most
UTF-8 bytes any one vocabulary token stands for. Why that is safe: a token covers at most B bytes and a
character is at least one byte, so `n` characters take at least `n / B` tokens (for tokenizers that do
not delete characters while normalising, which byte-level BPE and SentencePiece do not). Hence
- a field over the limit alone has more than `max_length + CUT_MARGIN` tokens: its sample is over
  `--data.max_length` and is truncated (or dropped) whether or not it was cut; a sample within the
  limit is never cut;
- the `max_length` tokens a truncated sample keeps lie in its first `max_length * B` characters, at
  least CUT_MARGIN tokens' worth of text before the cut, so the cut does not reach them.
A 50 MB record then costs the tokenisation of a few hundred kilobytes, not of 50 MB.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from alignkit.data.readers import Record
from alignkit.errors import DataError

log = logging.getLogger("alignkit")

CUT_MARGIN = 64
ROLES = ("system", "user", "assistant", "tool")


def check_messages(source: str, key: str, messages: list[dict[str, Any]]) -> None:
    """Chat roles are known and alternate (system only first; no two user or two assistant turns in a row;
    tool results only after an assistant turn or another tool result); assistant turns are not empty (a
    turn that only calls tools has `tool_calls`)."""
    for i, m in enumerate(messages):
        role, where = m["role"], f"{source}: field '{key}[{i}]'"
        if role not in ROLES:
            raise DataError(f"{where}: role '{role}' is not one of {', '.join(ROLES)}")
        prev = messages[i - 1]["role"] if i else None
        if role == "system" and i:
            raise DataError(f"{where}: a system message can only come first")
        if role == prev and role in ("user", "assistant"):
            raise DataError(f"{where}: two '{role}' messages in a row; user and assistant turns must alternate")
        if role == "tool" and prev not in ("assistant", "tool"):
            raise DataError(f"{where}: a tool message must follow an assistant message")
        if role == "assistant" and not m["content"].strip() and not m.get("tool_calls"):
            raise DataError(f"{where}: the assistant message is empty")


def check_finite(source: str, key: str, v: float) -> float:
    if not math.isfinite(v):
        raise DataError(f"{source}: field '{key}' must be a finite number, got {v}")
    return v


def check_labels(records: Iterable[Record], key: str, rules: list[str]) -> None:
    """Every record has the reference answer that the label-reading rules (`math`, `exact`) compare with."""
    if not rules:
        return
    for rec in records:
        if rec.data.get(key) is None:
            raise DataError(f"{rec.source}: missing field '{key}': --reward.rules {' '.join(rules)} compare each "
                            "response with the prompt's reference answer (--data.label_key names the field)")


def char_limit(tokenizer, max_length: int) -> int:
    """The character bound of the module doc, from the longest vocabulary token in UTF-8 bytes."""
    widest = max((len(t.encode()) for t in tokenizer.get_vocab()), default=1)
    return (max_length + CUT_MARGIN) * max(widest, 1)


def _cut(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, list):
        return [m | {"content": m["content"][:limit]} if isinstance(m, dict) and isinstance(m.get("content"), str)
                else m for m in value]
    return value


def _too_long(value: Any, limit: int) -> bool:
    if isinstance(value, str):
        return len(value) > limit
    return isinstance(value, list) and any(
        isinstance(m, dict) and isinstance(m.get("content"), str) and len(m["content"]) > limit for m in value)


def cut_long_texts(records: list[Record], keys: Iterable[str], limit: int) -> list[Record]:
    """`records` with each text field (or chat message content) under `keys` cut to `limit` characters."""
    keys, out, cut = tuple(keys), [], 0
    for rec in records:
        long = [k for k in keys if _too_long(rec.data.get(k), limit)]
        if long:
            cut += 1
            rec = replace(rec, data=rec.data | {k: _cut(rec.data[k], limit) for k in long})
        out.append(rec)
    if cut:
        log.info("%d record(s) with a text over %d characters cut to it before tokenising "
                 "(they exceed --data.max_length either way)", cut, limit)
    return out


def cut_to_max_length(records: list[Record], tokenizer, d: Any) -> list[Record]:
    """`cut_long_texts` over the text fields the data config `d` names, at `char_limit` of its max_length."""
    keys = (d.prompt_key, d.response_key, d.messages_key, d.chosen_key, d.rejected_key, d.completion_key)
    return cut_long_texts(records, keys, char_limit(tokenizer, d.max_length))
