"""Command line + YAML -> a frozen config dataclass, through jsonargparse.

jsonargparse does the parsing (YAML via --config, dotted overrides, types, --help from the field
docstrings; a choice field is a `Literal`, which the parser checks and --help lists). This module adds
what users of the field expect on top: an unknown key names the closest valid one, a bad choice names
the flag and its choices, a list flag takes several values (`--data.train_files a.jsonl b.jsonl`), and a
bare `--resume` means "the newest checkpoint".
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import keyword
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

from alignkit.errors import ConfigError

set_parsing_settings(docstring_parse_attribute_docstrings=True)

_NEGATIVE = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-inf(inity)?$", re.IGNORECASE)

T = TypeVar("T")


def flat_fields(cls: type, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> type hint for every leaf field of a (nested) config dataclass."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        key = prefix + f.name
        if dataclasses.is_dataclass(hint):
            out.update(flat_fields(hint, key + "."))
        else:
            out[key] = hint
    return out


def _is_list(hint: Any) -> bool:
    """list[...], or an optional one; not a dict of lists (--ray.bundles takes one JSON value)."""
    if typing.get_origin(hint) is list:
        return True
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return is_union and any(typing.get_origin(a) is list for a in typing.get_args(hint))


def _suggest(key: str, valid: list[str], dashes: str = "") -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean '{dashes}{close[0]}'?" if close else ""


def _keyword_alias(tok: str, fields: dict[str, Any]) -> str:
    """`--rollout.async` -> `--rollout.async_`: a field cannot be named after a Python keyword, so it
    takes a trailing underscore and the flag keeps the plain word."""
    key, eq, inline = tok[2:].partition("=")
    if keyword.iskeyword(key.rsplit(".", 1)[-1]) and key + "_" in fields:
        return f"--{key}_{eq}{inline}"
    return tok


def _normalise_argv(argv: list[str], fields: dict[str, Any]) -> list[str]:
    """Join list values into one JSON token, turn a bare --resume into --resume latest, accept
    keyword flags (--rollout.async), and reject unknown flags with a suggestion (argparse alone would
    only say 'unrecognized arguments')."""
    valid = list(fields) + ["config", "help", "print_config"]
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if not tok.startswith("--"):
            out.append(tok)
            continue
        tok = _keyword_alias(tok, fields)
        key, eq, inline = tok[2:].partition("=")
        if key.endswith("+"):  # jsonargparse's append syntax
            key = key[:-1]
        if key not in valid:
            prefixes = {k.split(".")[0] for k in fields}
            if key not in prefixes:  # "--model CONFIG" loads a sub-config file
                raise ConfigError(f"unknown option '--{key}'{_suggest(key, valid, '--')} (see --help)")
        if key == "resume" and not eq and (i >= len(argv) or argv[i].startswith("--")):
            out += ["--resume", "latest"]
            continue
        if key in fields and _is_list(fields[key]) and not eq:
            values = []
            while i < len(argv) and not argv[i].startswith("--"):
                values.append(argv[i])
                i += 1
            if len(values) == 1 and values[0].startswith("["):
                out += [tok, values[0]]
            else:
                out += [tok, json.dumps(values)]
            continue
        if not eq and i < len(argv) and _NEGATIVE.match(argv[i]):  # argparse would take -1e-3 for an option
            out.append(f"{tok}={argv[i]}")
            i += 1
            continue
        out.append(tok)
    return out


def _flatten_yaml(d: dict[str, Any], fields: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys of a YAML mapping; a mapping that is a field's value (a dict field such as
    `data.chat_template_kwargs`) is one key."""
    keys = []
    for k, v in d.items():
        if isinstance(v, dict) and f"{prefix}{k}" not in fields:
            keys += _flatten_yaml(v, fields, f"{prefix}{k}.")
        else:
            keys.append(f"{prefix}{k}")
    return keys


def _check_yaml(path: str, fields: dict[str, Any]) -> None:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    for key in _flatten_yaml(data, fields):
        if key not in fields:
            raise ConfigError(f"{path}: unknown key '{key}'{_suggest(key, list(fields))}")


def build_parser(cls: type, prog: str, description: str | None = None) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, description=description or (cls.__doc__ or "").strip(), exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the fields below.")
    parser.add_class_arguments(cls, nested_key=None, as_group=True)
    return parser


PRESETS_DIR = Path(__file__).parent / "presets"


def presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def expand_preset(argv: list[str]) -> list[str]:
    """`--preset NAME` -> `--config <package>/config/presets/NAME.yaml`, placed first so that the
    user's own --config and flags override it."""
    if "--preset" not in argv:
        return argv
    i = argv.index("--preset")
    if i + 1 >= len(argv):
        raise ConfigError(f"--preset needs a name: {', '.join(presets())}")
    name = argv[i + 1]
    if name not in presets():
        raise ConfigError(f"unknown preset '{name}'{_suggest(name, presets())}; presets: {', '.join(presets())}")
    return ["--config", str(PRESETS_DIR / f"{name}.yaml")] + argv[:i] + argv[i + 2 :]


def _choices(hint: Any) -> tuple | None:
    """The values of a Literal field (or an optional one), else None."""
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if typing.get_origin(arg) is typing.Literal:
                return typing.get_args(arg)
    return None


def _parse_error(e: argparse.ArgumentError, fields: dict[str, Any]) -> ConfigError:
    """jsonargparse's error as one line; for a choice field: the flag, its choices and the value given."""
    text = " ".join(str(e).split())
    key = re.match(r'Parser key "([^"]+)"', text)
    given = re.search(r"(?:Got|Given) value: (.*)$", text)
    choices = _choices(fields.get(key.group(1))) if key else None
    if choices and given:
        return ConfigError(f"--{key.group(1)} must be one of {', '.join(map(str, choices))}, got '{given.group(1)}'")
    return ConfigError(text)


def parse_config(cls: type[T], argv: list[str], prog: str, description: str | None = None) -> T:
    """Parse `argv` (YAML via --config, then dotted overrides) into a frozen `cls`."""
    fields = flat_fields(cls)
    argv = _normalise_argv(expand_preset(list(argv)), fields)
    for i, tok in enumerate(argv[:-1]):
        if tok == "--config":
            _check_yaml(argv[i + 1], fields)
    parser = build_parser(cls, prog, description)
    try:
        ns = parser.parse_args(argv)
    except argparse.ArgumentError as e:
        raise _parse_error(e, fields) from None
    ns = parser.instantiate(ns)
    top = {f.name: ns[f.name] for f in dataclasses.fields(cls)}
    return cls(**top)


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML, loadable again with --config."""
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
