"""The id that fills the unused tail of packed rows.

Padding is never attended (its segment is -1 in the block-causal mask) nor scored (its loss mask is 0),
so its value only has to be a row of the embedding. The tokenizer's own pad token when it has one, else
its EOS token (Llama-3, Mistral and GPT-2 ship no pad token), else 0. Pad may equal EOS: nothing finds
the end of a sample by looking for the pad id; lengths and segment ids say where samples end.
"""

from __future__ import annotations


def pad_id(tokenizer) -> int:
    """An int id to pad with (never None, never a list)."""
    for i in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if isinstance(i, int):
            return i
    return 0
