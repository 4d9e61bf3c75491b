"""A checksum manifest per checkpoint: `manifest.json` lists every file with its size and SHA-256.

Written last, inside the temporary folder that becomes the checkpoint by one rename (atomic.py), so a
checkpoint folder that exists has its manifest. `verify` finds a damaged checkpoint before anything is
loaded from it: a missing, truncated or altered file (a flipped bit in a weight file would otherwise
resume silently with wrong weights).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from alignkit.errors import AlignkitError

MANIFEST = "manifest.json"


class DamagedCheckpoint(AlignkitError):
    """A checkpoint whose files do not match its manifest; the message names the file."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path) -> None:
    """List every file of `folder` (flat: a checkpoint has no subfolders)."""
    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256(p)}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1))


def verify(folder: Path) -> None:
    """Raise DamagedCheckpoint naming the first file that is missing, truncated or altered."""
    path = folder / MANIFEST
    try:
        files = json.loads(path.read_text())["files"]
        listed = {str(name): (int(e["bytes"]), str(e["sha256"])) for name, e in files.items()}
    except FileNotFoundError:
        raise DamagedCheckpoint(f"{path}: missing (a checkpoint without a manifest cannot be checked)") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DamagedCheckpoint(f"{path}: not a valid manifest") from None
    for name, (size, digest) in listed.items():
        file = folder / name
        if not file.is_file():
            raise DamagedCheckpoint(f"{file}: missing")
        actual = file.stat().st_size
        if actual != size:
            raise DamagedCheckpoint(f"{file}: {actual} bytes, the manifest says {size} (truncated or replaced)")
        if sha256(file) != digest:
            raise DamagedCheckpoint(f"{file}: checksum differs from the manifest (the file was altered or corrupted)")
