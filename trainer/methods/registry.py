"""The method registry, and a method's validated config from `--set key=value` strings (the edges)
or from a stored dict (the job payload, the patch metadata)."""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Any

from core.errors import ConfigError
from trainer.catalog import Catalog
from trainer.config import config_values, parse_value
from trainer.methods.base import Method, MethodConfig

_METHODS: Catalog[Method] = Catalog("method")


def register_method(method: Method) -> Method:
    """Add a method under its `name` (one line per method in `trainer/methods/__init__.py`)."""
    return _METHODS.add(method)


def get_method(name: str) -> Method:
    return _METHODS.get(name)


def method_names() -> list[str]:
    return _METHODS.names()


def split_setting(item: str) -> tuple[str, str]:
    """`key=value` as (key, value), both stripped."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value")
    return key, raw.strip()


def parse_overrides(method: Method | str, overrides: Sequence[str] = ()) -> MethodConfig:
    """Build the method's config from its defaults plus `key=value` strings (as given to `--set`).

    Unknown keys list the allowed ones; bad values name the field and the expected type or values
    (range and choice checks come from the config's own validation). Only the edges (the CLI, the
    registry checking `patchreg train --set`, a job's stored `--set` list) parse strings."""
    if isinstance(method, str):
        method = get_method(method)
    cls = method.config_cls
    fields = cls.public_fields()
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for item in overrides:
        key, raw = split_setting(item)
        if key not in fields:
            allowed = ", ".join(sorted(fields))
            raise ConfigError(f"--set {key}: unknown setting for method {method.name!r}; allowed: {allowed}")
        values[fields[key].name] = parse_value(key, hints[fields[key].name], raw)
    return cls(**values)


def config_from_dict(method: Method | str, data: Mapping[str, Any]) -> MethodConfig:
    """The method's config from its stored dict form (`MethodConfig.to_dict()`), every key and
    value type checked; missing keys take their defaults."""
    if isinstance(method, str):
        method = get_method(method)
    cls = method.config_cls
    return cls(**config_values(cls, data, owner=f"method {method.name!r}"))
