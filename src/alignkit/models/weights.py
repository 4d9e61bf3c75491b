"""Full weights of a (possibly LoRA-wrapped) trainer model, named as the plain transformers model
names them: what a rollout engine loads after each update."""

from __future__ import annotations

import re
from collections.abc import Iterator

import torch


def _plain_name(name: str) -> str | None:
    """peft's injected names -> the base model's; None for adapter-only tensors and for the frozen original
    of a module peft trains a copy of (`modules_to_save`: a reward model's or critic's score head), whose
    trained copy takes the plain name."""
    if "lora_" in name or ".original_module." in name:
        return None
    name = re.sub(r"\.base_layer(?=\.)", "", name)  # nested: an MoE module with two adapted expert stacks
    name = name.replace(".modules_to_save.default.", ".")
    return name.removeprefix("base_model.model.")


@torch.no_grad()
def full_weights(model) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, tensor) for every parameter of the model as a plain transformers model.

    With LoRA the adapters are merged into the base weights for the duration of the iteration and
    unmerged afterwards, so consume each tensor (copy it) before asking for the next one."""
    if not hasattr(model, "merge_adapter"):
        yield from model.named_parameters()
        return
    model.merge_adapter()
    try:
        for name, p in model.named_parameters():
            plain = _plain_name(name)
            if plain is not None:
                yield plain, p
    finally:
        model.unmerge_adapter()
