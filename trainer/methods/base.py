"""The contract every training method fulfils, and the method-config base class.

A method freezes the base, attaches its own trainable parameters (picked later by name, all names
carrying the method's prefix), turns what it learned into a `Patch`, and puts the model back the
way it found it. The loop knows nothing else about a method. A method may also describe its
trainable tensors as views of base weights (`weight_views`); regularisers (`trainer/regularizers/`)
build on that description and on nothing else, so a method knows no regulariser.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from core.errors import ConfigError
from trainer.config import Config
from trainer.config import check_choice as check_choice  # re-exported: methods import them from here
from trainer.config import check_range as check_range
from trainer.config import doc as doc
from trainer.patch.targets import Target
from trainer.patch.targets import resolve as resolve_targets
from trainer.patch.types import Delta, Patch

TARGETS_DOC = (
    "weights to train: short or layer-relative names (q_proj, attn.c_attn, mlp.experts.down_proj) or "
    "full names; unset: the architecture's defaults (`patchreg base show`)"
)


@dataclass
class MethodConfig(Config):
    """Base of every method config: the method's own settings only (a regulariser has its own)."""


def check_targets(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, tuple | list) or not value or not all(isinstance(v, str) and v for v in value):
        return [f"{name} must be a non-empty list of weight names, e.g. q_proj,v_proj"]
    return []


def targets_for(model: nn.Module, targets: tuple[str, ...] | None, method: str) -> dict[str, Target]:
    """The weights a method trains: `targets`, or the model architecture's defaults for `method`."""
    return resolve_targets(model, targets, method)


def layer_of(module_name: str) -> str:
    """Group key for per-layer coefficients: 'layers.3' for decoder layer 3 (`h.3` in GPT-2 and
    Falcon), else the name itself."""
    match = re.search(r"(?:^|\.)(?:layers|h)\.(\d+)\.", module_name)
    return f"layers.{match.group(1)}" if match else module_name


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


@dataclass
class Prepared:
    """A model made ready for training by a method.

    `model` is what the loop calls (it may be a wrapper such as a PeftModel); `params` are the
    trainable parameters by name; `state` is whatever the method needs to extract and clean up."""

    model: nn.Module
    params: dict[str, nn.Parameter]
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class WeightView:
    """A trainable tensor seen as (part of) one base weight parameter.

    `key` names that parameter as `model.named_parameters()` does (`<module>.weight`, or a 3-D
    expert parameter): the importance file is keyed the same way. A view with `axis` None is the
    whole parameter in its stored layout. A sliced delta covers `index` along `axis` of the
    target's [out, in] weight (1: columns, 0: rows), which is the stored parameter transposed
    (`transposed`, Conv1D) or one expert of it (`expert`). `anchor` is the value the parameter
    starts from (the base weight), or None when the parameter is a delta (it starts at zero)."""

    module: str  # the target name, grouping terms by layer
    param: nn.Parameter
    anchor: torch.Tensor | None = None
    axis: int | None = None
    index: torch.Tensor | None = None
    key: str | None = None  # default: f"{module}.weight"
    transposed: bool = False
    expert: int | None = None

    @property
    def importance_key(self) -> str:
        return self.key or f"{self.module}.weight"


class Method(ABC):
    """A training method. Subclasses set `name`, `prefix`, `config_cls` and `default_lr`."""

    name: ClassVar[str]
    prefix: ClassVar[str]  # every trainable parameter name contains it
    config_cls: ClassVar[type[MethodConfig]]
    default_lr: ClassVar[float] = 2e-4

    def prepare(self, model: nn.Module, config: MethodConfig) -> Prepared:
        """Freeze the base, attach the method's parameters, return what to train."""
        for p in model.parameters():
            p.requires_grad_(False)
        wrapped, state = self.attach(model, config)
        params = self.select_params(wrapped, state)
        for p in params.values():
            p.requires_grad_(True)
        if not params:
            raise ConfigError(f"method {self.name!r} found nothing to train with {config.to_dict()}")
        return Prepared(model=wrapped, params=params, state=state)

    def select_params(self, wrapped: nn.Module, state: dict[str, Any]) -> dict[str, nn.Parameter]:
        """Trainable parameters, picked by name: those carrying the method's prefix."""
        return {n: p for n, p in wrapped.named_parameters() if self.prefix in n}

    @abstractmethod
    def attach(self, model: nn.Module, config: MethodConfig) -> tuple[nn.Module, dict[str, Any]]:
        """Add the method's trainable parameters to the (already frozen) model; return the model to
        call and the state that `extract_patch`/`cleanup` need."""

    @abstractmethod
    def extract_patch(self, prepared: Prepared, config: MethodConfig) -> Patch:
        """What was learned, as per-module deltas in fp32 (never views of live parameters)."""

    @abstractmethod
    def cleanup(self, prepared: Prepared) -> nn.Module:
        """Undo `prepare`: return the base model with its original modules and weights."""

    def weight_views(self, prepared: Prepared) -> list[WeightView] | None:
        """Every trainable tensor as a view of one base weight, for regularisers that anchor trained
        weights to the base; None when the method's parameters are no such view (the default)."""
        return None

    @classmethod
    def has_weight_views(cls) -> bool:
        """Whether the method offers `weight_views` (known before any model is loaded)."""
        return cls.weight_views is not Method.weight_views


def new_patch(method: Method, config: MethodConfig, deltas: Mapping[str, Delta]) -> Patch:
    return Patch(method=method.name, method_config=config.to_dict(), deltas=dict(deltas))
