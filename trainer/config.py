"""Validated config dataclasses, shared by methods and regularisers, and the two ways into them.

A config is built from Python values (validated by `problems()`), from `key=value` strings at the
edges (`--set`: `parse_value` turns one string into the field's declared type), or from a stored
JSON dict (`from_dict`: checks every key and value type, so a stored config is never re-parsed as
text). A field named like a Python keyword carries a trailing underscore (`lambda_`); its public
name, used by `--set`, `to_dict()` and `describe()`, is the name without it (`lambda`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError


def doc(text: str, **kwargs: Any) -> Any:
    """A dataclass field carrying its documentation (shown by `--set` errors and `describe()`)."""
    return field(metadata={"doc": text}, **kwargs)


def public_name(f: dataclasses.Field[Any]) -> str:
    return f.name.removesuffix("_")


@dataclass
class Config:
    """Base of every method and regulariser config. Subclasses add fields and extend `problems()`.

    `__post_init__` collects every problem before raising, so a user fixes all of them at once.
    """

    def problems(self) -> list[str]:
        return []

    def __post_init__(self) -> None:
        found = self.problems()
        if found:
            raise ConfigError(f"invalid {type(self).__name__}: " + "; ".join(found))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form stored in the patch metadata and the registry, keyed by public names."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[public_name(f)] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def public_fields(cls) -> dict[str, dataclasses.Field[Any]]:
        return {public_name(f): f for f in dataclasses.fields(cls)}

    @classmethod
    def describe(cls) -> dict[str, str]:
        return {name: f.metadata.get("doc", "") for name, f in cls.public_fields().items()}


def check_range(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [f"{name} must be a number in {'(' if lo_open else '['}{lo}, {hi}]"]
    if math.isnan(value):  # compares false with every bound, so it would pass the check below
        return [f"{name}={value} is not a number in {'(' if lo_open else '['}{lo}, {hi}]"]
    if value > hi or value < lo or (lo_open and value == lo):
        return [f"{name}={value} is outside {'(' if lo_open else '['}{lo}, {hi}]"]
    return []


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> list[str]:
    if value not in allowed:
        return [f"{name}={value!r} is not one of {', '.join(allowed)}"]
    return []


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _optional(hint: Any) -> tuple[bool, Any]:
    """(whether None is allowed, the inner type) of a field's type hint."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        return True, next(a for a in args if a is not type(None))
    return False, hint


def parse_value(name: str, hint: Any, raw: str) -> Any:
    """Turn one `--set` string into the declared type, or explain what was expected (`name` is
    the key as the user typed it)."""
    optional, hint = _optional(hint)
    if optional and raw.lower() in {"none", "null", ""}:
        return None
    if hint is bool:
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise ConfigError(f"{name}={raw!r}: expected a boolean (true/false)")
    if hint is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected an integer") from None
    if hint is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected a number") from None
    if typing.get_origin(hint) is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def check_value(name: str, hint: Any, value: Any) -> Any:
    """A stored JSON value as the declared type (a list becomes a tuple, an integer a float), or
    explain what was expected. Ranges and choices are left to the config's own validation."""
    optional, hint = _optional(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name}=None: a value is required")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}={value!r}: expected a boolean (true/false)")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{name}={value!r}: expected an integer")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{name}={value!r}: expected a number")
    if typing.get_origin(hint) is tuple:
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{name}={value!r}: expected a list of names")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name}={value!r}: expected a string")
    return value


def config_values(cls: type[Config], data: Mapping[str, Any], *, owner: str) -> dict[str, Any]:
    """Constructor arguments of `cls` from a stored dict keyed by public names; an unknown key
    lists the allowed ones (`owner` names whose settings they are, e.g. "method 's2ft'")."""
    fields = cls.public_fields()
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown setting {key!r} for {owner}; allowed: {', '.join(sorted(fields))}")
        f = fields[key]
        values[f.name] = check_value(key, hints[f.name], value)
    return values
