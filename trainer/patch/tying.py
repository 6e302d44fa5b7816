"""Tied weights: a module whose weight is the same Parameter as another module's (a tied `lm_head`
and `embed_tokens`). Changing one in place would change both; a patch on `lm_head` must change the
output projection only, as it did in training and as PEFT applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn


def shared_weights(model: nn.Module) -> set[int]:
    """ids of the weight Parameters that more than one module of `model` holds (one walk, so a
    patch over many modules asks the model once)."""
    holders: dict[int, int] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter):
            holders[id(weight)] = holders.get(id(weight), 0) + 1
    return {key for key, count in holders.items() if count > 1}


def shares_weight(model: nn.Module, module: nn.Module, shared: set[int] | None = None) -> bool:
    """Whether another module of `model` holds the very same weight Parameter as `module`
    (`shared`: `shared_weights(model)`, when the caller asks about many modules)."""
    weight = getattr(module, "weight", None)
    return weight is not None and id(weight) in (shared if shared is not None else shared_weights(model))


@dataclass
class Untied:
    """`module` holds a private copy of a weight it shared; `retie()` puts the shared one back."""

    module: nn.Module
    shared: nn.Parameter

    def retie(self) -> None:
        self.module.weight = self.shared


def untie(model: nn.Module, module: nn.Module, shared: set[int] | None = None) -> Untied | None:
    """Give `module` its own copy of a shared weight (bit-identical); None when nothing is shared."""
    if not shares_weight(model, module, shared):
        return None
    weight = module.weight
    assert isinstance(weight, nn.Parameter)
    module.weight = nn.Parameter(weight.detach().clone(), requires_grad=weight.requires_grad)
    return Untied(module, weight)


def untie_config(config: Any) -> None:
    """Record in a model config (and its text config, for multimodal wrappers) that the output
    projection is its own weight now, so a saved merge keeps it and loading does not re-tie it."""
    configs: list[Any] = [config]
    get_text = getattr(config, "get_text_config", None)
    if callable(get_text):
        configs.append(get_text())
    for c in configs:
        if getattr(c, "tie_word_embeddings", False):
            c.tie_word_embeddings = False
