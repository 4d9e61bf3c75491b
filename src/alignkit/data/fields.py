"""Reading and checking one field of a record; every error names the file, line and field."""

from __future__ import annotations

from typing import Any

from alignkit.data.readers import Record
from alignkit.data.validate import check_finite, check_messages
from alignkit.errors import DataError

Message = dict[str, Any]
"""A chat message: string `role` and `content`, and any other keys the template reads (`tool_calls`,
`reasoning_content`, `name` ...), passed on as they are."""


def _type_name(v: Any) -> str:
    return type(v).__name__


def require(rec: Record, key: str) -> Any:
    if key not in rec.data:
        present = ", ".join(sorted(rec.data)) or "none"
        raise DataError(f"{rec.source}: missing field '{key}' (fields present: {present})")
    return rec.data[key]


def text_field(rec: Record, key: str, allow_empty: bool = False) -> str:
    v = require(rec, key)
    if not isinstance(v, str):
        raise DataError(f"{rec.source}: field '{key}' must be a string, got {_type_name(v)}")
    if not allow_empty and not v.strip():
        raise DataError(f"{rec.source}: field '{key}' is empty")
    return v


def messages_value(rec: Record, key: str, v: Any) -> list[Message]:
    """Validate a chat list [{role, content, ...}, ...]."""
    if not isinstance(v, list) or not v:
        raise DataError(f"{rec.source}: field '{key}' must be a non-empty list of messages, got {_type_name(v)}")
    for i, m in enumerate(v):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(f"{rec.source}: field '{key}[{i}]' must be an object with string 'role' and 'content'")
    messages = [dict(m) for m in v]
    check_messages(rec.source, key, messages)
    return messages


def text_or_messages(rec: Record, key: str) -> str | list[Message]:
    v = require(rec, key)
    if isinstance(v, list):
        return messages_value(rec, key, v)
    return text_field(rec, key)


def tools_value(rec: Record, key: str) -> list[dict[str, Any]] | None:
    """The record's tool schemas for the chat template (a list of objects), or None when it has none."""
    v = rec.data.get(key)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(t, dict) for t in v):
        raise DataError(f"{rec.source}: field '{key}' must be a list of tool objects, got {_type_name(v)}")
    return v


def number_field(rec: Record, key: str, default: float) -> float:
    if key not in rec.data or rec.data[key] is None:
        return default
    v = rec.data[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise DataError(f"{rec.source}: field '{key}' must be a number, got {_type_name(v)}")
    return check_finite(rec.source, key, float(v))
