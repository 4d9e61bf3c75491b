"""Loading a name the user defined in a Python file: `path/to/file.py:name`.

Reward functions (`--reward.function`), environment classes (`--env.class`), tools (`--env.tools`)
and agents (`--agent`) are all named this way. The file is imported once, as a module of its own
(it may import anything installed, and keep state in module globals).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, Literal

from alignkit.errors import ConfigError


def _import_file(file: Path, flag: str) -> Any:
    # A name of its own per file, so two user files both called rewards.py do not collide; importing
    # the same file twice gives the same module.
    module_name = f"alignkit_user_{abs(hash(str(file.resolve())))}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module_spec = importlib.util.spec_from_file_location(module_name, file)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"{flag}: cannot import {file} as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[module_name]
        raise ConfigError(f"{flag}: importing {file} failed: {type(e).__name__}: {e}") from e
    return module


def load_object(spec: str, flag: str, kind: Literal["function", "class"] = "function") -> Any:
    """`path/to/file.py:name` -> the function (any callable) or class `name` defined in that file.

    `flag` names the option in every error (`--reward.function: file not found: x.py`).
    """
    path, colon, name = spec.rpartition(":")
    placeholder = "Class" if kind == "class" else "name"
    if not colon or not path or not name:
        raise ConfigError(f"{flag} must be path/to/file.py:{placeholder}, got '{spec}'")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{flag}: file not found: {path}")
    module = _import_file(file, flag)
    obj = getattr(module, name, None)
    if obj is None:
        defined = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise ConfigError(f"{flag}: {path} defines no '{name}' (callables in it: {', '.join(defined) or 'none'})")
    ok = isinstance(obj, type) if kind == "class" else callable(obj)
    if not ok:
        raise ConfigError(f"{flag}: {path}:{name} is a {type(obj).__name__}, not a {kind}")
    return obj
