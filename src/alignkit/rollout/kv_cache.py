"""A transformers DynamicCache whose full-attention layers reserve room for the whole generation.

transformers' DynamicLayer concatenates every step, copying the entire cache each time (quadratic in
the length). ReservedLayer keeps the same interface but writes each step into spare capacity and
hands attention a view; dropping finished rows copies only the filled part, once.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def reserved_cache(config, capacity: int) -> DynamicCache:
    """A DynamicCache for `config` whose plain full-attention layers reserve `capacity` positions.

    Other layer kinds (sliding window, linear attention, ...) keep transformers' own classes.
    """
    cache = DynamicCache(config=config)
    cache.layers = [
        ReservedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers
    ]
    return cache


class ReservedLayer(DynamicLayer):
    """Keys and values live in (batch, heads, capacity, head_dim) buffers; `keys`/`values` are views of
    the filled prefix (batch, heads, seq, head_dim), so the inherited length, mask and crop logic hold."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        room = max(self.capacity, key_states.shape[-2])
        self._k, self._v = _buffer(key_states, room), _buffer(value_states, room)
        self._views(0)
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write (batch, heads, new, head_dim) states after the filled prefix; return the whole prefix."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self.keys.shape[-2]
        end = start + key_states.shape[-2]
        if end > self._k.shape[-2]:  # past the reservation: grow geometrically, like a list
            room = max(end, 2 * self._k.shape[-2])
            self._k, self._v = _moved(self._k, start, room), _moved(self._v, start, room)
        self._k[:, :, start:end] = key_states
        self._v[:, :, start:end] = value_states
        self._views(end)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep (and repeat, if indices repeat) the given batch rows; copies only the filled prefix."""
        if not self.is_initialized:
            return
        n = self.keys.shape[-2]
        indices = indices.to(self._k.device)
        self._k, self._v = _selected(self._k, indices, n), _selected(self._v, indices, n)
        self._views(n)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self.batch_select_indices(torch.arange(self._k.shape[0]).repeat_interleave(repeats))

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)

    def _views(self, n: int) -> None:
        self.keys, self.values = self._k[:, :, :n], self._v[:, :, :n]


def _buffer(states: torch.Tensor, room: int) -> torch.Tensor:
    """Empty (batch, heads, room, head_dim) buffer shaped and typed like `states`."""
    batch, heads, _, dim = states.shape
    return states.new_empty((batch, heads, room, dim))


def _moved(buffer: torch.Tensor, n: int, room: int) -> torch.Tensor:
    """A larger buffer holding `buffer`'s first n positions."""
    out = _buffer(buffer, room)
    out[:, :, :n] = buffer[:, :, :n]
    return out


def _selected(buffer: torch.Tensor, indices: torch.Tensor, n: int) -> torch.Tensor:
    """A buffer of rows `indices` of `buffer`, same capacity, first n positions copied (one gather)."""
    out = buffer.new_empty((len(indices), *buffer.shape[1:]))
    torch.index_select(buffer[:, :, :n], 0, indices, out=out[:, :, :n])
    return out
