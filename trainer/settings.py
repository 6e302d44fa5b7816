"""A training run's typed settings (a method config and an optional regularisation), from the
edges' `--set key=value` strings or from the stored form, and back to the stored form.

The stored form is described in `core.method_config`: the method's settings plus, when regularised,
`"regularizer": {"name": ..., "config": {...}}` without per-run inputs (ALEWR's importance path).
Between the edges and the loop, settings travel typed; nothing re-parses them as text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.errors import ConfigError
from core.method_config import method_settings, stored_config
from trainer.methods import Method, MethodConfig, config_from_dict, get_method, parse_overrides
from trainer.methods.registry import split_setting
from trainer.regularizers import (
    Regularization,
    get_regularizer,
    parse_regularizer_settings,
    regularizer_from_dict,
)
from trainer.regularizers.registry import owner_of_setting


def parse_settings(
    method: Method | str, overrides: Sequence[str] = (), regularizer: str | None = None
) -> tuple[MethodConfig, Regularization | None]:
    """The method's config and the chosen regulariser's from `--set` strings.

    A key spelled `<regulariser>_<setting>` (e.g. `alewr_lambda=0.01`) sets the chosen regulariser;
    every other key the method. A regulariser the method cannot work with is refused here."""
    chosen = get_method(method) if isinstance(method, str) else method
    reg = get_regularizer(regularizer) if regularizer is not None else None
    if reg is not None:
        reg.check_method(chosen)
    own: list[str] = []
    reg_values: dict[str, str] = {}
    for item in overrides:
        key, raw = split_setting(item)
        owner = owner_of_setting(key)
        if owner is None or key in chosen.config_cls.public_fields():
            own.append(item)
        elif reg is not None and owner.name == reg.name:
            reg_values[key] = raw
        else:
            raise ConfigError(
                f"--set {key} is a setting of regulariser {owner.name!r}; add --regularize {owner.name}"
            )
    config = parse_overrides(chosen, own)
    if reg is None:
        return config, None
    return config, parse_regularizer_settings(reg.name, reg_values)


def settings_from_dict(
    method: Method | str, method_config: Mapping[str, Any]
) -> tuple[MethodConfig, Regularization | None]:
    """Typed settings from a stored `method_config` (new or old form), every key and type checked."""
    config = config_from_dict(method, method_settings(method_config))
    regularization = regularizer_from_dict(method_config)
    if regularization is not None:
        regularization.check_method(get_method(method) if isinstance(method, str) else method)
    return config, regularization


def settings_to_dict(config: MethodConfig, regularization: Regularization | None = None) -> dict[str, Any]:
    """The stored form of typed settings (what a patch's `method_config` holds)."""
    if regularization is None:
        return config.to_dict()
    return stored_config(config.to_dict(), regularization.name, regularization.stored())
