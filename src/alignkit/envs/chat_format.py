"""Token ids of a multi-turn conversation from the tokenizer's own chat template, never re-tokenising a
turn the model sampled.

The prompt is the template's rendering of the first messages with the generation prompt, tokenised
once. After each sampled assistant turn the trajectory grows by the ids of what the template adds
after an assistant turn: the rest of the turn's end marker, the new messages (observations, tool
results) and the next generation prompt. Those are found for any template the same way:

1. Render a fixed dummy conversation `[user, assistant MARKER] + new messages` with the generation
   prompt. Everything after MARKER is what the template writes after an assistant turn's content.
2. If the model ended its turn itself (finish "stop") and the text of its last sampled token (special
   tokens shown, e.g. `<|im_end|>`) begins that text, that part was sampled: it is skipped, and only
   the rest (e.g. "\\n<|im_start|>user\\n...") is added. A turn cut by a token limit (finish "length")
   or ended by a stop string gets the template's whole end marker added, as context.
3. The ids are those of the rendered dummy conversation after that point, tokenised in context (so a
   tokenizer that adds a leading space at the start of a text adds none here); the cut must fall on a
   token boundary there, which holds whenever the end marker is a special token.

Because the dummy turn is rendered as the assistant turn before the new messages, templates that
rewrite earlier turns (Qwen3 drops the `<think>` reasoning of assistant turns before the last user
message) do not matter: the sampled ids stay exactly as sampled, and the model's next turn is
conditioned on them.
"""

from __future__ import annotations

from typing import Any

from alignkit.data.chat import require_chat_template
from alignkit.envs.protocol import Message
from alignkit.errors import ModelError

MARKER = "ALIGNKIT-TURN-7f3a9c"
_DUMMY = [{"role": "user", "content": "ALIGNKIT-QUERY"}, {"role": "assistant", "content": MARKER}]


class ChatFormat:
    """Renders and tokenises conversations with `tokenizer`'s chat template, `tools` (OpenAI-style JSON
    schemas, or None) and extra template variables (`enable_thinking`, ...)."""

    def __init__(self, tokenizer, tools: list[dict] | None = None, template_kwargs: dict[str, Any] | None = None,
                 source: str = "multi-turn rollout"):
        require_chat_template(tokenizer, source)
        self.tokenizer = tokenizer
        self.tools = tools or None
        self.kwargs = dict(template_kwargs or {})
        self.source = source

    def render(self, messages: list[Message], generation_prompt: bool) -> str:
        try:
            return self.tokenizer.apply_chat_template(
                messages, tools=self.tools, tokenize=False, add_generation_prompt=generation_prompt, **self.kwargs
            )
        except Exception as e:
            roles = ", ".join(str(m.get("role")) for m in messages)
            raise ModelError(f"{self.source}: the chat template cannot render messages with roles [{roles}]: "
                             f"{type(e).__name__}: {e}") from e

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        """The ids of `messages` with the generation prompt: what the model continues from."""
        return self.encode(self.render(messages, generation_prompt=True))

    def continuation_ids(self, messages: list[Message], last_token: int | None, model_ended: bool) -> list[int]:
        """The ids to append after a sampled assistant turn whose last token is `last_token`:
        the rest of the turn's end, `messages`, and the next generation prompt (see the module doc).
        `model_ended`: the model finished the turn itself (not cut by a token limit)."""
        text = self.render(_DUMMY + messages, generation_prompt=True)
        at = text.find(MARKER)
        if at < 0:
            raise ModelError(f"{self.source}: the chat template does not write an assistant message's content "
                             "verbatim, so the tokens it adds after a turn cannot be found")
        cut = at + len(MARKER)
        if model_ended and last_token is not None:
            sampled_end = self.tokenizer.decode([last_token], skip_special_tokens=False)
            if sampled_end and text.startswith(sampled_end, cut):
                cut += len(sampled_end)
        head, full = self.encode(text[:cut]), self.encode(text)
        if full[: len(head)] != head:
            raise ModelError(f"{self.source}: the chat template's text after an assistant turn "
                             f"({text[cut:cut + 20]!r}) merges with the turn in tokenisation; an end-of-turn "
                             "special token is needed for token-exact multi-turn rollouts")
        return full[len(head):]


class RawFormat:
    """Text without a chat template (base models): the prompt is the observation's text tokenised with
    the tokenizer's special tokens (a BOS), each later observation is its text as it is, appended
    after the sampled turn (whatever the model sampled, EOS included, stays). Message contents are
    joined; roles are not written."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @staticmethod
    def _text(messages: list[Message]) -> str:
        return "".join(str(m["content"]) for m in messages)

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        return list(self.tokenizer(self._text(messages), add_special_tokens=True)["input_ids"])

    def continuation_ids(self, messages: list[Message], last_token: int | None, model_ended: bool) -> list[int]:
        text = self._text(messages)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []
