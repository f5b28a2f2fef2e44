"""Turning raw config values (command-line strings, JSON) into typed field values.

`coerce` takes a JSON-ish value (lists for tuples), `parse` a command-line string (tuples are
comma-separated); both raise `ConfigError` naming the field.
"""

from __future__ import annotations

import typing
from typing import Any


class ConfigError(ValueError):
    """A configuration field is unknown or has a bad value; the message names it.

    Import it from `trainers.config`, which re-exports it."""


def coerce(name: str, value: Any, hint: Any) -> Any:
    """Coerce a JSON-ish value (lists for tuples) to the field's type, or raise ConfigError."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, str):
            return parse(name, value, hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        (item_type, _) = typing.get_args(hint)
        return tuple(coerce(name, v, item_type) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return parse(name, value, hint)
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return parse(name, str(value), hint)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return parse(name, str(value), hint)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{name}: unsupported type {hint}")


def parse(name: str, raw: str, hint: Any) -> Any:
    """Parse a command-line string into the field's type: tuples are comma-separated."""
    if typing.get_origin(hint) is tuple:
        (item_type, _) = typing.get_args(hint)
        parts = [p.strip() for p in raw.split(",") if p.strip()]
        return tuple(parse(name, p, item_type) for p in parts)
    if hint is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    try:
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
    except ValueError:
        kind = "an integer" if hint is int else "a number"
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None
    return raw
