"""Packed attention masks (models/attention_mask.py): which keys each query sees, written out by hand,
and the format each attention implementation gets."""

import pytest
import torch
from transformers import AutoConfig
from transformers.masking_utils import sdpa_mask

from alignkit.data.packing import pack
from alignkit.data.samples import TokenizedSample
from alignkit.errors import ModelError
from alignkit.models.attention_mask import layer_windows, packed_attention_mask, packed_mask_function


def part(ids, n_prompt):
    return TokenizedSample(ids, [0] * n_prompt + [1] * (len(ids) - n_prompt), "t")


# A pair sharing its 3-token prompt: row [p0 p1 p2 | a3 a4 | b3 b4 b5], positions 0 1 2 3 4 3 4 5.
SHARED = pack([part([1, 2, 3, 4, 5], 3), part([1, 2, 3, 6, 7, 8], 3)], pad_id=0, capacity=8, groups=[[0, 1]])


def allowed(batch, window=None):
    """0/1 `(rows, seq, seq)`: query i (row) sees key j (column)."""
    rows, seq = batch.seg_ids.shape
    fn = packed_mask_function(batch.seg_ids, batch.position_ids, batch.parent, window)
    return sdpa_mask(rows, seq, seq, mask_function=fn, allow_is_causal_skip=False)[:, 0].int().tolist()


def test_shared_prompt_full_attention():
    assert SHARED.position_ids.tolist() == [[0, 1, 2, 3, 4, 3, 4, 5]]
    assert allowed(SHARED)[0] == [
        [1, 0, 0, 0, 0, 0, 0, 0],  # p0
        [1, 1, 0, 0, 0, 0, 0, 0],  # p1
        [1, 1, 1, 0, 0, 0, 0, 0],  # p2
        [1, 1, 1, 1, 0, 0, 0, 0],  # a3: the prompt and itself
        [1, 1, 1, 1, 1, 0, 0, 0],  # a4
        [1, 1, 1, 0, 0, 1, 0, 0],  # b3: the prompt and itself, never a
        [1, 1, 1, 0, 0, 1, 1, 0],  # b4
        [1, 1, 1, 0, 0, 1, 1, 1],  # b5
    ]


def test_shared_prompt_window_counts_the_samples_own_positions():
    # Window 3: position p sees positions p-2..p. b3 (position 3, row 5) sees p1 and p2 (rows 1, 2)
    # although they are 4 rows back: a's tokens in between are not b's history.
    assert allowed(SHARED, window=3)[0] == [
        [1, 0, 0, 0, 0, 0, 0, 0],  # p0
        [1, 1, 0, 0, 0, 0, 0, 0],  # p1
        [1, 1, 1, 0, 0, 0, 0, 0],  # p2
        [0, 1, 1, 1, 0, 0, 0, 0],  # a3: p1 p2 a3
        [0, 0, 1, 1, 1, 0, 0, 0],  # a4: p2 a3 a4
        [0, 1, 1, 0, 0, 1, 0, 0],  # b3: p1 p2 b3
        [0, 0, 1, 0, 0, 1, 1, 0],  # b4: p2 b3 b4
        [0, 0, 0, 0, 0, 1, 1, 1],  # b5: b3 b4 b5
    ]


def test_packed_rows_with_a_window_and_padding():
    b = pack([part([1, 2, 3, 4], 0), part([5, 6], 0), part([7, 8, 9, 10, 11], 0)], pad_id=0, capacity=7)
    assert b.seg_ids.tolist() == [[2, 2, 2, 2, 2, 1, 1], [0, 0, 0, 0, -1, -1, -1]]
    got = allowed(b, window=2)
    assert got[0] == [
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [0, 1, 1, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 1, 0],  # a new sample: nothing of the one before
        [0, 0, 0, 0, 0, 1, 1],
    ]
    assert got[1] == [
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [0, 1, 1, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 1],  # padding (all at position 0) sees only padding: no row is empty
        [0, 0, 0, 0, 1, 1, 1],
        [0, 0, 0, 0, 1, 1, 1],
    ]


@pytest.fixture(scope="module")
def configs(arch_dir):
    def config(arch, impl):
        cfg = AutoConfig.from_pretrained(arch_dir(arch))
        cfg._attn_implementation = impl
        return cfg

    return config


def test_each_implementation_gets_its_own_format(configs):
    full = allowed(SHARED)
    sdpa = packed_attention_mask(configs("llama", "sdpa"), SHARED.seg_ids, SHARED.position_ids, SHARED.parent)
    assert sdpa.dtype == torch.bool and sdpa.shape == (1, 1, 8, 8) and sdpa[:, 0].int().tolist() == full
    # eager attention adds the mask to the scores: 0 where seen, the dtype's min elsewhere
    eager = packed_attention_mask(configs("llama", "eager"), SHARED.seg_ids, SHARED.position_ids, SHARED.parent,
                                  torch.bfloat16)
    assert eager.dtype == torch.bfloat16
    assert torch.equal(eager, torch.where(sdpa, 0.0, torch.finfo(torch.bfloat16).min).to(torch.bfloat16))


def test_layer_types_get_one_mask_each(configs):
    assert layer_windows(configs("llama", "sdpa")) == {"full_attention": None}
    assert layer_windows(configs("mistral", "sdpa")) == {"sliding_attention": 8}
    assert layer_windows(configs("gemma3", "sdpa")) == {"sliding_attention": 8, "full_attention": None}
    masks = packed_attention_mask(configs("gemma3", "sdpa"), SHARED.seg_ids, SHARED.position_ids, SHARED.parent)
    assert masks["full_attention"][:, 0].int().tolist() == allowed(SHARED)
    assert masks["sliding_attention"][:, 0].int().tolist() == allowed(SHARED, window=8)
    mistral = packed_attention_mask(configs("mistral", "sdpa"), SHARED.seg_ids, SHARED.position_ids)
    assert isinstance(mistral, torch.Tensor)  # one kind of layer: one mask, which any forward accepts


def test_layer_types_without_a_packed_mask_are_refused(configs):
    cfg = configs("gemma3", "sdpa")
    cfg.layer_types, cfg.attention_chunk_size = ["chunked_attention", "full_attention"], 4  # Llama 4
    with pytest.raises(ModelError, match="Gemma3TextConfig has 'chunked_attention' layers; alignkit packs rows only"):
        layer_windows(cfg)
    with pytest.raises(ModelError, match="attn_implementation 'flash_attention_2' takes no packed mask"):
        packed_attention_mask(configs("llama", "flash_attention_2"), SHARED.seg_ids, SHARED.position_ids)
