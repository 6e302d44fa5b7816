"""The regulariser registry, and a regulariser's validated config from `--set` strings or from the
stored form (`core.method_config`)."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from core.errors import ConfigError
from core.method_config import regularizer_settings
from trainer.catalog import Catalog
from trainer.config import config_values, parse_value
from trainer.regularizers.base import Regularization, Regularizer

_REGULARIZERS: Catalog[Regularizer] = Catalog("regulariser")


def register_regularizer(regularizer: Regularizer) -> Regularizer:
    """Add a regulariser under its `name` (one line per regulariser in `trainer/regularizers/__init__.py`)."""
    return _REGULARIZERS.add(regularizer)


def get_regularizer(name: str) -> Regularizer:
    return _REGULARIZERS.get(name)


def regularizer_names() -> list[str]:
    return _REGULARIZERS.names()


def regularization(name: str, **values: Any) -> Regularization:
    """The named regulariser with its config built from Python values (defaults for the rest)."""
    regularizer = get_regularizer(name)
    return Regularization(regularizer, regularizer.config_cls(**values))


def setting_key(regularizer: Regularizer, public: str) -> str:
    """How a regulariser setting is spelled in `--set`: `<regulariser>_<setting>` (alewr_lambda)."""
    return f"{regularizer.name}_{public}"


def parse_regularizer_settings(name: str, settings: Mapping[str, str]) -> Regularization:
    """The named regulariser from `--set` values keyed by their `--set` spelling (`alewr_lambda`)."""
    regularizer = get_regularizer(name)
    cls = regularizer.config_cls
    hints = typing.get_type_hints(cls)
    by_key = {setting_key(regularizer, public): f for public, f in cls.public_fields().items()}
    values: dict[str, Any] = {}
    for key, raw in settings.items():
        if key not in by_key:
            allowed = ", ".join(sorted(by_key))
            raise ConfigError(f"--set {key}: unknown setting for regulariser {name!r}; allowed: {allowed}")
        values[by_key[key].name] = parse_value(key, hints[by_key[key].name], raw)
    return Regularization(regularizer, cls(**values))


def owner_of_setting(key: str) -> Regularizer | None:
    """The regulariser whose `--set` spelling `key` is, if any."""
    for regularizer in _REGULARIZERS.entries():
        if any(key == setting_key(regularizer, p) for p in regularizer.config_cls.public_fields()):
            return regularizer
    return None


def regularizer_from_dict(method_config: Mapping[str, Any] | None) -> Regularization | None:
    """The regulariser of a stored `method_config` (either form, see `core.method_config`), its
    settings checked like a method's; None when it trained with none."""
    found = regularizer_settings(method_config)
    if found is None:
        return None
    name, settings = found
    regularizer = get_regularizer(name)
    cls = regularizer.config_cls
    return Regularization(regularizer, cls(**config_values(cls, settings, owner=f"regulariser {name!r}")))
