"""The method registry and `--set key=value` parsing into a validated config."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any

from core.errors import ConfigError
from trainer.methods.base import Method, MethodConfig

_METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add a method under its `name`; a second method with the same name is a programming error."""
    if method.name in _METHODS:
        existing = type(_METHODS[method.name]).__qualname__
        raise ValueError(f"method name {method.name!r} is already registered by {existing}")
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return _METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(sorted(_METHODS))}") from None


def method_names() -> list[str]:
    return sorted(_METHODS)


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _convert(field: dataclasses.Field, hint: Any, raw: str) -> Any:
    """Turn one `--set` string into the field's declared type, or explain what was expected."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if raw.lower() in {"none", "null", ""}:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(field, inner[0], raw)
    if hint is bool:
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise ConfigError(f"{field.name}={raw!r}: expected a boolean (true/false)")
    if hint is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{field.name}={raw!r}: expected an integer") from None
    if hint is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{field.name}={raw!r}: expected a number") from None
    if origin is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def parse_overrides(method: Method | str, overrides: Sequence[str] = ()) -> MethodConfig:
    """Build the method's config from its defaults plus `key=value` strings (as given to `--set`).

    Unknown keys list the allowed ones; bad values name the field and the expected type or values
    (range and choice checks come from the config's own validation)."""
    if isinstance(method, str):
        method = get_method(method)
    cls = method.config_cls
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        if key not in fields:
            allowed = ", ".join(sorted(fields))
            raise ConfigError(f"--set {key}: unknown setting for method {method.name!r}; allowed: {allowed}")
        values[key] = _convert(fields[key], hints[key], raw.strip())
    return cls(**values)
