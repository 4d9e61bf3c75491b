"""Chat templates -> training rows, with a loss mask over the assistant turns they train.

The template is the tokenizer's own (`apply_chat_template`), given the run's extra variables
(`--data.chat_template_kwargs`, e.g. `enable_thinking`) and the record's tools, everywhere a template
is rendered (training rows, RL and rejection-sampling prompts).

The rule: **an assistant turn is trained as the template renders it when that turn is the last one**,
which is what the model samples at that point of the conversation: the prompt is the conversation
before the turn with the generation prompt appended, the target is the rest of the rendering that
ends with the turn (its end-of-turn marker included). A turn's span is located by rendering those
two texts, so no template-specific marker is needed.

Many templates (ChatML) render every prefix of a conversation as a prefix of the whole; a record then
is one row with every trained turn marked. Others rewrite history: Qwen3 drops the `<think>` reasoning
of assistant turns before the last user message, so an earlier turn reads differently once the
conversation goes on. Such a record becomes several rows: walking back from the last trained turn, a
turn joins the row of a later turn when that row's text begins with the turn as rendered last, and
otherwise starts a row of its own (the conversation up to that turn). The rows of a record share their
common prefix in the packed forward (data/packing.py groups).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from alignkit.data.fields import Message
from alignkit.errors import DataError, ModelError

Span = tuple[int, int]
"""Character span [start, end) of a trained assistant turn in a row's text."""


def require_chat_template(tokenizer, source: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            f"{source}: chat data needs a chat template, but the tokenizer has none "
            "(add one to tokenizer_config.json / chat_template.jinja, or use plain prompt/response text)"
        )


@dataclass(frozen=True)
class Template:
    """The tokenizer's chat template as a record is rendered: the run's extra template variables and
    the record's tools (None: the template gets no `tools`). `source` names the record in errors, and
    `key` the record's field holding the conversation when it is one list (SFT `messages`)."""

    tokenizer: Any
    source: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    key: str = ""

    def where(self, i: int) -> str:
        """Message i, as an error names it."""
        return f"field '{self.key}[{i}]'" if self.key else f"message {i} of the conversation"

    def render(self, messages: list[Message], add_generation_prompt: bool) -> str:
        require_chat_template(self.tokenizer, self.source)
        extra = dict(self.kwargs) | ({"tools": self.tools} if self.tools is not None else {})
        try:
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt, **extra)
        except Exception as e:  # jinja's TemplateError, or `raise_exception` inside the template
            raise DataError(f"{self.source}: the chat template cannot render this conversation "
                            f"({type(e).__name__}: {' '.join(str(e).split())})") from None


def render_prompt(template: Template, messages: list[Message]) -> str:
    """The prompt text a model continues from (generation prompt appended)."""
    return template.render(messages, add_generation_prompt=True)


def _turn(template: Template, messages: list[Message], i: int) -> tuple[str, Span]:
    """The conversation rendered up to and ending with assistant turn i, and the turn's span in it."""
    before = template.render(messages[:i], add_generation_prompt=True) if i else ""
    upto = template.render(messages[: i + 1], add_generation_prompt=False)
    if not upto.startswith(before):
        raise DataError(
            f"{template.source}: {template.where(i)}: the chat template renders this assistant turn so that it "
            "does not continue its own generation prompt, so it is not what the model would sample "
            "(check --data.chat_template_kwargs against the data, e.g. enable_thinking with reasoning in the turn)"
        )
    return upto, (len(before), len(upto))


def chat_rows(template: Template, messages: list[Message], trained: list[int]) -> list[tuple[str, list[Span]]]:
    """Rows `(text, spans)` training the assistant messages at indices `trained` (see the module rule),
    in conversation order. The first row to be filled is the whole conversation rendered."""
    if not trained:
        raise DataError(f"{template.source}: the conversation has no assistant turn to train on")
    rows: list[tuple[str, list[Span]]] = []
    text, spans = template.render(messages, add_generation_prompt=False), []
    for i in reversed(trained):
        upto, span = _turn(template, messages, i)
        if not text.startswith(upto):
            if spans:
                rows.append((text, spans[::-1]))
            text, spans = upto, []
        spans.append(span)
    rows.append((text, spans[::-1]))
    return rows[::-1]


def assistant_turns(messages: list[Message], start: int = 0) -> list[int]:
    """Indices of the assistant messages from `start` on."""
    return [i for i in range(start, len(messages)) if messages[i]["role"] == "assistant"]


def tokenize_spans(tokenizer, text: str, spans: list[Span]) -> tuple[list[int], list[int]]:
    """Token ids of `text` and a 0/1 mask of tokens whose first character lies inside a span."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = []
    for start, _ in enc["offset_mapping"]:
        mask.append(int(any(a <= start < b for a, b in spans)))
    return list(enc["input_ids"]), mask
