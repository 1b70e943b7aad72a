"""TOML tables into frozen dataclasses, by their fields: the one validator every section uses.

:func:`build` refuses keys that are not fields (naming the known ones), checks each value
against the field's type hint (lists become tuples, integers widen to floats, nested
dataclass fields are sub-tables) and lets the dataclass's own ``__post_init__`` check
ranges, re-raising its ``ValueError`` as :class:`ConfigError` with the section's name.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and says how to fix it."""


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a field's type hint; lists become tuples, ints widen to float."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        return _coerce(value, options[0], where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {type(value).__name__}")
        inner = typing.get_args(hint)[0]
        return tuple(_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where} must be one of {typing.get_args(hint)}, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str | Path):
            raise ConfigError(f"{where} must be a path string, got {value!r}")
        return Path(value)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {type(value).__name__}")
        return build(hint, value, where)  # type: ignore[arg-type]
    return value


def build(cls: type, table: Mapping[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from a TOML table: unknown keys are refused, types are checked.

    Nested dataclass fields (``[detect.anomaly]``) are built recursively. The dataclass's own
    ``__post_init__`` validation errors are re-raised as :class:`ConfigError` with the section.
    """
    hints = _hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(
            f"[{where}] has unknown key {unknown[0]!r}; known keys: {', '.join(known)}"
        )
    kwargs = {
        k: build(hints[k], v, f"{where}.{k}")
        if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict)
        else _coerce(v, hints[k], f"[{where}] {k}")
        for k, v in table.items()
    }
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"[{where}] {exc}") from exc
