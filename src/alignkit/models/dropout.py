"""Switching a model's dropout off for training.

Every alignkit loss compares the trained model with itself: RL's importance ratio with the sampler's
log-probs (taken without dropout), the KL with a reference evaluated in eval mode, DPO's implicit reward
with the reference. Dropout makes the trained function a random one that differs from all of these (GPT-2
configs default to 0.1: PPO's first ratio is not 1 and its first KL not 0). TRL and OpenRLHF switch it off
for the same reason. The model's config is left as it is, so an exported model keeps its own rates.
"""

from __future__ import annotations

from torch import nn

# Attention implementations read their dropout rate from a float attribute of the attention module
# (transformers' `dropout=0.0 if not self.training else self.attention_dropout`), not from an nn.Dropout.
_RATE_ATTRIBUTES = ("attention_dropout", "attn_dropout", "dropout", "dropout_p", "attn_pdrop", "resid_pdrop")


def disable_dropout(model: nn.Module) -> int:
    """Set every dropout rate in `model` to 0, in place; returns how many were non-zero."""
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            changed += module.p > 0
            module.p = 0.0
        for name in _RATE_ATTRIBUTES:
            rate = getattr(module, name, None)
            if isinstance(rate, float) and not isinstance(rate, bool):
                changed += rate > 0
                setattr(module, name, 0.0)
    return changed
