"""Chat templates -> token ids with a mask over every assistant turn.

The template is the tokenizer's own (`apply_chat_template`). To find the assistant tokens without
template-specific markers, each assistant turn's text span is located by rendering the conversation
up to that turn with and without it; the full conversation is tokenized once and tokens whose
characters fall in a span are marked. This works for any template whose rendering of a prefix of the
conversation is a prefix of the full rendering, which is checked.
"""

from __future__ import annotations

from alignkit.data.fields import Message
from alignkit.errors import DataError, ModelError


def require_chat_template(tokenizer, source: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            f"{source}: chat data needs a chat template, but the tokenizer has none "
            "(add one to tokenizer_config.json / chat_template.jinja, or use plain prompt/response text)"
        )


def _render(tokenizer, messages: list[Message], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def render_prompt(tokenizer, messages: list[Message], source: str) -> str:
    """The prompt text a model continues from (generation prompt appended)."""
    require_chat_template(tokenizer, source)
    return _render(tokenizer, messages, add_generation_prompt=True)


def assistant_spans(tokenizer, messages: list[Message], source: str) -> tuple[str, list[tuple[int, int]]]:
    """(full text, [(start, end) character span of each assistant turn, end-of-turn marker included])."""
    require_chat_template(tokenizer, source)
    full = _render(tokenizer, messages, add_generation_prompt=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        upto = _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not full.startswith(upto) or not upto.startswith(before):
            raise DataError(
                f"{source}: the chat template does not render conversation prefixes as prefixes "
                "(it rewrites earlier turns), so assistant tokens cannot be located"
            )
        spans.append((len(before), len(upto)))
    if not spans:
        raise DataError(f"{source}: the conversation has no assistant turn to train on")
    return full, spans


def tokenize_spans(tokenizer, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Token ids of `text` and a 0/1 mask of tokens whose first character lies inside a span."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = []
    for start, _ in enc["offset_mapping"]:
        mask.append(int(any(a <= start < b for a, b in spans)))
    return list(enc["input_ids"]), mask
