"""Regularisers, one folder each beside the methods, registered here with one line each.

A regulariser adds a penalty to the training loss; it works with any method that describes its
trainable tensors as views of base weights (`Method.weight_views`).
"""

from __future__ import annotations

from trainer.regularizers.alewr import AlewrConfig, AlewrRegularizer
from trainer.regularizers.base import Regularization, Regularizer, RegularizerConfig, RunInputs
from trainer.regularizers.registry import (
    get_regularizer,
    parse_regularizer_settings,
    register_regularizer,
    regularization,
    regularizer_from_dict,
    regularizer_names,
)

register_regularizer(AlewrRegularizer())

__all__ = [
    "AlewrConfig",
    "Regularization",
    "Regularizer",
    "RegularizerConfig",
    "RunInputs",
    "get_regularizer",
    "parse_regularizer_settings",
    "register_regularizer",
    "regularization",
    "regularizer_from_dict",
    "regularizer_names",
]
