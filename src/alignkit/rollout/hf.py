"""The torch rollout engine: any Hugging Face causal LM, CPU or GPU, with a KV cache.

`generate` splits the prompt-major list of sequences into microbatches of at most `max_batch` rows
(prompts sorted by length first, so a microbatch pads little) and decodes each with rollout/decode.py.
The uniform numbers behind every sample are drawn up front from a generator seeded with
`params.seed`, one per (sequence, step), so a seed gives the same samples whatever the microbatch
size and whichever rows finish early.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch

from alignkit.config.sampling import SamplingParams
from alignkit.errors import AlignkitError
from alignkit.models.padding import pad_id
from alignkit.rollout.base import Generation
from alignkit.rollout.decode import StopRules, decode
from alignkit.rollout.stop import StopStrings, eos_ids, stop_id_table


class HFEngine:
    """Implements RolloutEngine over `model` (an HF causal LM) and its `tokenizer`.

    device: where to run (default: where the model is). max_batch: sequences decoded at once, to
    bound memory (0 = all of a call's sequences together).
    """

    def __init__(self, model, tokenizer, device: str | torch.device | None = None, max_batch: int = 0):
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.vocab = model.config.get_text_config().vocab_size  # the logits' last dimension
        self.pad_id = pad_id(tokenizer)
        # stop-string tables cost a pass over the vocabulary; RL asks for the same stops every step
        self._stop_strings: dict[tuple[str, ...], StopStrings] = {}

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        """`params.n` generations per prompt, prompt-major (prompt 0's n samples first)."""
        _check(prompts, params, self.model)
        if not prompts:
            return []
        n, steps = params.n, params.max_new_tokens
        total = len(prompts) * n
        uniforms = None
        if params.temperature > 0:  # one draw per (sequence, step); row = global sequence id
            gen = torch.Generator()
            if params.seed is None:
                gen.seed()  # fresh entropy; the global RNG is never touched
            else:
                gen.manual_seed(params.seed)
            uniforms = torch.rand((total, steps), generator=gen)
        stop = self._stop_rules(params)

        by_length = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        seqs = [p * n + j for p in by_length for j in range(n)]  # global ids, p * n + sample
        chunk = self.max_batch or total
        out: list[Generation | None] = [None] * total
        for start in range(0, total, chunk):
            ids = seqs[start : start + chunk]
            distinct = list(dict.fromkeys(s // n for s in ids))
            local = {p: i for i, p in enumerate(distinct)}
            u = uniforms[ids].to(self.device) if uniforms is not None else None
            rows = decode(
                self.model,
                [prompts[p] for p in distinct],
                [local[s // n] for s in ids],
                u,
                params,
                stop,
                self.pad_id,
            )
            texts = self.tokenizer.batch_decode([r.ids for r in rows], skip_special_tokens=True)
            for s, r, text in zip(ids, rows, texts, strict=True):
                if stop.strings is not None:
                    text = stop.strings.cut(text)
                out[s] = Generation(s // n, r.ids, r.logprobs, r.finish_reason, text)
        return cast(list[Generation], out)

    @torch.no_grad()
    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy each (name, tensor) into the parameter of that name, in place.

        Names are as in `model.named_parameters()` (tied aliases such as lm_head.weight accepted).
        Tensors are copied as they arrive, so an error leaves the earlier ones loaded.
        """
        params = dict(self.model.named_parameters(remove_duplicate=False))
        for name, tensor in named_tensors:
            param = params.get(name)
            if param is None:
                raise AlignkitError(
                    f"load_weights: unknown parameter {name!r}: the rollout model has no such name"
                )
            if param.shape != tensor.shape:
                raise AlignkitError(
                    f"load_weights: {name!r} has shape {tuple(tensor.shape)} but the rollout model's "
                    f"is {tuple(param.shape)}"
                )
            param.copy_(tensor)

    def sleep(self) -> None:
        """Give cached GPU memory back while training runs (the KV cache lives only inside generate)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def wake_up(self) -> None:
        """Nothing to restore: weights stay in place and the cache is rebuilt per call."""

    def _stop_rules(self, params: SamplingParams) -> StopRules:
        ids = stop_id_table(
            eos_ids(self.tokenizer, self.model) | set(params.stop_token_ids), self.vocab, self.device
        )
        if not any(params.stop):
            return StopRules(ids, None)
        key = tuple(params.stop)
        if key not in self._stop_strings:
            pieces = self.tokenizer.batch_decode([[i] for i in range(self.vocab)], skip_special_tokens=True)
            self._stop_strings[key] = StopStrings(params.stop, pieces, self.tokenizer, self.device)
        return StopRules(ids, self._stop_strings[key])


def _check(prompts: list[list[int]], params: SamplingParams, model) -> None:
    """Reject sampling parameters and prompts the engine cannot honour, naming the culprit."""
    problems = [
        (params.n < 1, f"n must be >= 1, got {params.n}"),
        (params.temperature < 0, f"temperature must be >= 0, got {params.temperature}"),
        (not 0 < params.top_p <= 1, f"top_p must be in (0, 1], got {params.top_p}"),
        (params.top_k < 0, f"top_k must be >= 0 (0 disables), got {params.top_k}"),
        (params.max_new_tokens < 1, f"max_new_tokens must be >= 1, got {params.max_new_tokens}"),
    ]
    for bad, message in problems:
        if bad:
            raise AlignkitError(f"sampling params: {message}")
    limit = getattr(model.config, "max_position_embeddings", None)
    for i, p in enumerate(prompts):
        if not p:
            raise AlignkitError(f"prompt {i} is empty: generation needs at least one token to condition on")
        if limit is not None and len(p) + params.max_new_tokens > limit:
            raise AlignkitError(
                f"prompt {i} has {len(p)} tokens; with max_new_tokens={params.max_new_tokens} it exceeds the "
                f"model's {limit} positions"
            )
