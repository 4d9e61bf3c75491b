"""The final model in Hugging Face format: loads with the Auto classes, LoRA merged in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.checkpoint.atomic import atomic_dir
from alignkit.models.load import merged_for_export


def export_hf(model, tokenizer, path: Path, extra_json: dict[str, Any] | None = None) -> Path:
    """Save `model` (adapters folded in) and `tokenizer` to `path`; `extra_json` maps file names to
    JSON-serialisable content written beside them (for example reward statistics)."""
    plain = merged_for_export(model)
    with atomic_dir(path) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, content in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(content, indent=2))
    return path
