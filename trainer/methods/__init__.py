"""Training methods, one folder each, registered here with one line each."""

from __future__ import annotations

from trainer.methods.base import Method, MethodConfig, Prepared, WeightView
from trainer.methods.full import FullMethod
from trainer.methods.lora import LoraMethod
from trainer.methods.propulsion import PropulsionMethod
from trainer.methods.registry import (
    config_from_dict,
    get_method,
    method_names,
    parse_overrides,
    register_method,
)
from trainer.methods.s2ft import S2ftMethod

register_method(LoraMethod())
register_method(S2ftMethod())
register_method(PropulsionMethod())
register_method(FullMethod())

__all__ = [
    "Method",
    "MethodConfig",
    "Prepared",
    "WeightView",
    "config_from_dict",
    "get_method",
    "method_names",
    "parse_overrides",
    "register_method",
]
