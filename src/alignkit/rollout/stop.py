"""Stop conditions: stop token ids (EOS and friends) and stop strings.

Stop ids are a vocabulary-sized boolean table, so "did this row stop" is one gather per step. Stop
strings need text, which is Python work per row; to keep it off the hot path, a second table marks
the tokens that could complete a stop string, and only rows that just sampled one are decoded (a
short window of their newest tokens, not the whole response).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def stop_id_table(ids: Iterable[int], vocab: int, device: torch.device) -> torch.Tensor:
    """(vocab,) bool: True at the token ids that end a sequence (ids outside the vocabulary are ignored)."""
    table = torch.zeros(vocab, dtype=torch.bool, device=device)
    table[[i for i in set(ids) if 0 <= i < vocab]] = True
    return table


def eos_ids(tokenizer, model) -> set[int]:
    """Every id that ends a sequence: the tokenizer's EOS and the model's `eos_token_id`, from its
    generation config and its config (each an int or a list: Llama-3 stops at any of several)."""
    ids: set[int | None] = {tokenizer.eos_token_id}
    for cfg in (getattr(model, "generation_config", None), model.config.get_text_config()):
        eos = getattr(cfg, "eos_token_id", None)
        ids |= set(eos) if isinstance(eos, list | tuple) else {eos}
    return {i for i in ids if isinstance(i, int)}


class StopStrings:
    """Detects where a stop string completes, decoding only rows whose newest token could complete one.

    `pieces` is the text of every vocabulary token decoded alone. A token can complete a stop string
    only if its text holds the string's last character, or its text is unreliable alone (empty, or a
    partial UTF-8 sequence shown as U+FFFD). A stop string ending in whitespace makes every token a
    candidate: tokenizers that fold a space into the next token (SentencePiece's "▁") would hide it.
    """

    def __init__(self, stops: list[str], pieces: list[str], tokenizer, device: torch.device):
        self.stops = [s for s in stops if s]
        self.tokenizer = tokenizer
        last = {s[-1] for s in self.stops}
        if any(c.isspace() for c in last):
            flags = [True] * len(pieces)
        else:
            flags = [not p or "\ufffd" in p or any(c in p for c in last) for p in pieces]
        self.candidates = torch.tensor(flags, dtype=torch.bool, device=device)
        """(vocab,) bool: tokens after which the row's text must be checked."""
        # Enough tokens to spell the longest stop string (every token adds at least one byte) plus a
        # few to absorb a multi-byte character cut at the window's start.
        self.window = max((len(s.encode()) for s in self.stops), default=0) + 4

    def completes(self, response_ids: list[int]) -> bool:
        """Whether the text of `response_ids` (the newest `window` suffice) contains a stop string.

        Called after each candidate token, so any occurrence found is one the newest token completed.
        """
        text = self.tokenizer.decode(response_ids[-self.window :], skip_special_tokens=True)
        return any(s in text for s in self.stops)

    def cut(self, text: str) -> str:
        """`text` up to and including the stop string occurrence that ends first (unchanged if none)."""
        ends = [i + len(s) for s in self.stops if (i := text.find(s)) >= 0]
        return text[: min(ends)] if ends else text
