"""Greedy completion of plain-text prompts with transformers' `generate`, for evaluation.

A stop-gap for held-out accuracy until the rollout engine (rollout/hf.py) exists; prompts are
tokenized exactly as training tokenizes them (data/tokenize.py `encode`).
"""

from __future__ import annotations

import torch

from alignkit.models.padding import pad_id


@torch.no_grad()
def greedy_complete(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 64) -> list[str]:
    model.eval()
    device = next(model.parameters()).device
    outs: list[str] = []
    for i in range(0, len(prompts), batch_size):
        enc = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts[i : i + batch_size]]
        width = max(len(e) for e in enc)
        ids = torch.full((len(enc), width), pad_id(tokenizer), dtype=torch.long)
        attn = torch.zeros((len(enc), width), dtype=torch.long)
        for r, e in enumerate(enc):  # left padding: every prompt ends where generation starts
            ids[r, width - len(e) :] = torch.tensor(e)
            attn[r, width - len(e) :] = 1
        gen = model.generate(
            input_ids=ids.to(device), attention_mask=attn.to(device), max_new_tokens=max_new_tokens,
            do_sample=False, pad_token_id=pad_id(tokenizer),
        )
        outs += tokenizer.batch_decode(gen[:, width:], skip_special_tokens=True)
    return outs
