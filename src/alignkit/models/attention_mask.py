"""Attention masks of packed rows (data/packing.py), in each attention implementation's own format.

A token attends to the earlier tokens of its own sample and, in the shared-prompt layout, to the shared
prompt its sample continues; nothing else. Layers with a sliding window see, in addition, only the last
`window` positions, counted in the sample's own position ids, so a continuation's window reaches back
through its shared prompt exactly as it does when the sample runs alone (row offsets would count the
other continuations packed between them). The condition is written as a transformers mask function and
rendered by transformers' own mask interface, so every kernel gets its native format: a bool mask for
sdpa, an additive float mask (0 / dtype min) for eager attention (which adds the mask to the scores),
a BlockMask for flex_attention. Models whose layers differ (Gemma 2/3 and gpt-oss interleave sliding
and full layers) get a dict {layer type: mask}, which their forwards accept in place of a mask.
flash-attention needs none of this: it reads sample boundaries from the position ids
(models/forward.py `uses_varlen_kernel`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers.cache_utils import get_layer_types_and_kwargs
from transformers.masking_utils import (
    ALL_MASK_ATTENTION_FUNCTIONS,
    and_masks,
    causal_mask_function,
    remap_positions_for_packed_sequence,
    sliding_window_causal_mask_function,
)

from alignkit.errors import ModelError

MaskFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

FULL, SLIDING = "full_attention", "sliding_attention"


def segment_visibility(seg_ids: torch.Tensor, parent: torch.Tensor | None = None) -> MaskFunction:
    """Mask function (batch, head, q, kv) -> bool: kv is in q's segment, or in the shared prompt q's
    segment continues (`parent`, `(n_segments,)`, -1: none). Padding (segment -1) sees only padding."""
    if parent is None:
        prompt = torch.full_like(seg_ids, -2)
    else:  # -2 matches no segment, padding included
        prompt = torch.where(seg_ids >= 0, parent[seg_ids.clamp(min=0)], -2)
        prompt = prompt.masked_fill(prompt < 0, -2)

    def visible(b, h, q, kv):
        kv_seg = seg_ids[b, kv]
        return (seg_ids[b, q] == kv_seg) | (prompt[b, q] == kv_seg)

    return visible


def packed_mask_function(seg_ids: torch.Tensor, position_ids: torch.Tensor, parent: torch.Tensor | None = None,
                         window: int | None = None) -> MaskFunction:
    """Mask function of a packed batch `(rows, seq)`: `segment_visibility`, causal in position ids, and
    with `window` the last `window` positions only (the query's own included, as transformers counts it:
    position p sees p - window + 1 .. p). Position order equals row order for every visible pair (a
    sample's tokens run in order, after the prompt they continue), so causality in positions is
    causality in the row."""
    causal = causal_mask_function if window is None else sliding_window_causal_mask_function(window)
    return and_masks(remap_positions_for_packed_sequence(causal, position_ids),
                     segment_visibility(seg_ids, parent))


def layer_windows(config) -> dict[str, int | None]:
    """{layer type: sliding window or None} over the model's decoder layers, by transformers' own
    reading of the config (`layer_types`, else `sliding_window` on every layer)."""
    text = config.get_text_config(decoder=True)
    types, kwargs = get_layer_types_and_kwargs(text)
    windows: dict[str, int | None] = {}
    for layer_type, kw in zip(types, kwargs, strict=True):
        if layer_type not in (FULL, SLIDING):
            raise ModelError(f"{type(config).__name__} has {layer_type!r} layers; alignkit packs rows only for "
                             "full and sliding-window attention (use --model.attn_implementation flash_attention_2)")
        window = kw.get("sliding_window")
        if windows.setdefault(layer_type, window) != window:
            raise ModelError(f"{type(config).__name__} has {layer_type!r} layers with different windows "
                             f"({windows[layer_type]} and {window}); alignkit cannot build one mask for them")
    return windows


def packed_attention_mask(config, seg_ids: torch.Tensor, position_ids: torch.Tensor,
                          parent: torch.Tensor | None = None, dtype: torch.dtype = torch.float32):
    """The `attention_mask` argument for a forward of `config`'s model over a packed batch `(rows, seq)`:
    one mask `(rows, 1, seq, seq)` (or a BlockMask) when all layers attend alike, else a dict
    {layer type: mask}. `dtype`: the model's compute dtype (eager masks hold its min)."""
    impl = config._attn_implementation
    if impl not in ALL_MASK_ATTENTION_FUNCTIONS or impl.startswith("flash"):
        raise ModelError(f"attn_implementation {impl!r} takes no packed mask; use sdpa, eager or flex_attention "
                         "(flash_attention_2 reads sample boundaries from position ids)")
    render, (rows, seq) = ALL_MASK_ATTENTION_FUNCTIONS[impl], seg_ids.shape
    masks = {
        layer_type: render(
            batch_size=rows, q_length=seq, kv_length=seq,
            mask_function=packed_mask_function(seg_ids, position_ids, parent, window),
            allow_is_causal_skip=False, dtype=dtype, device=seg_ids.device, config=config,
        )
        for layer_type, window in layer_windows(config).items()
    }
    return next(iter(masks.values())) if len(masks) == 1 else masks
