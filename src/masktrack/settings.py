"""Settings dataclasses from and to plain YAML values: merging, key checks, one-line errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path, PurePath
from typing import Any

import yaml

from masktrack.errors import InputError


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, recursing into nested mappings (neither is changed)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML settings file (InputError when missing or not a mapping)."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    return dict(as_mapping(values or {}, str(path)))


def build(kind: type, values: dict[str, Any], source: str) -> Any:
    """``kind(**values)`` after checking the keys; lists become tuples where the default is a tuple."""
    check_keys(values, kind, source)
    defaults = kind()
    converted = {
        key: tuple(value) if isinstance(value, list) and isinstance(getattr(defaults, key), tuple) else value
        for key, value in values.items()
    }
    return kind(**converted)


def as_mapping(values: Any, source: str) -> dict[str, Any]:
    """``values`` if it is a mapping, else InputError naming ``source``."""
    if not isinstance(values, dict):
        raise InputError(f"{source}: expected a mapping, got {type(values).__name__}")
    return values


def check_keys(values: dict[str, Any], kind: type, source: str) -> None:
    """InputError naming ``source`` for keys that are not fields of the dataclass ``kind``."""
    unknown = set(values) - {item.name for item in dataclasses.fields(kind)}
    if unknown:
        raise InputError(f"{source}: unknown setting(s) {', '.join(sorted(unknown))}")


def plain(value: Any) -> Any:
    """Nested dicts, lists and tuples as dicts and lists, and paths as strings, ready for YAML."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, PurePath):
        return str(value)
    return value
