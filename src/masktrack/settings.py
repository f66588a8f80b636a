"""Settings dataclasses from and to plain YAML values: merging, key checks, one-line errors."""

from __future__ import annotations

import dataclasses
import types
import typing
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


def from_dict(kind: type, values: Any, source: str) -> Any:
    """A settings dataclass ``kind`` from nested plain values, every value checked against its field's type.

    Unknown keys, wrong types (``"false"`` for a bool, ``1.5`` for an int, ``"high"`` for a float) and values
    the class itself rejects raise one-line InputErrors naming ``source`` and the key.
    """
    values = as_mapping(values, source)
    check_keys(values, kind, source)
    hints = typing.get_type_hints(kind)
    converted = {key: _typed(value, hints[key], f"{source}: {key}") for key, value in values.items()}
    try:
        return kind(**converted)
    except (TypeError, ValueError) as error:
        raise InputError(f"{source}: {error}") from None


def _typed(value: Any, hint: Any, source: str) -> Any:
    """``value`` checked against the type ``hint`` (lists become tuples where the hint is a tuple)."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in arguments:
            return None
        options = [argument for argument in arguments if argument is not type(None)]
        return _typed(value, options[0], source) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, source)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{source}: expected a list, got {value!r}")
        items = arguments[:1] if origin is list or (len(arguments) == 2 and arguments[1] is Ellipsis) else arguments
        if origin is tuple and len(items) > 1 and len(items) != len(value):
            raise InputError(f"{source}: expected {len(items)} values, got {value!r}")
        checked = [_typed(item, items[min(k, len(items) - 1)], f"{source}[{k}]") for k, item in enumerate(value)]
        return tuple(checked) if origin is tuple else checked
    return _scalar(value, hint, source)


def _scalar(value: Any, hint: Any, source: str) -> Any:
    """``value`` as a bool, int, float or str as ``hint`` says (an int is a float; nothing else converts)."""
    expected = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(hint)
    if expected is None:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, PurePath):
        return str(value)
    if type(value) is not hint:
        raise InputError(f"{source}: expected {expected}, got {value!r}")
    return value
