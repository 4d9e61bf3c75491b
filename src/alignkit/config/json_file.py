"""Reading a JSON settings file (a plan, a calibration) with an error that names the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.errors import ConfigError


def read_json(path: str | Path, what: str) -> Any:
    """The parsed content of `path`; a ConfigError naming `what` ("plan file", "calibration file") and the
    path when it is missing or not JSON."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(p)!r} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {str(p)!r} is not valid JSON: {exc}") from exc
