"""The registry validates method and regulariser names without importing the trainer; the names it
uses (`core.vocab`) must be exactly what the trainer registers."""

from __future__ import annotations

from core.vocab import REGULARIZABLE, REGULARIZERS, TRAIN_METHODS
from trainer.methods import get_method, method_names
from trainer.regularizers import regularizer_names


def test_the_registry_knows_the_trainers_methods_and_regularisers() -> None:
    assert sorted(TRAIN_METHODS) == method_names()
    assert sorted(REGULARIZERS) == regularizer_names()
    assert sorted(REGULARIZABLE) == sorted(m for m in method_names() if get_method(m).has_weight_views())
