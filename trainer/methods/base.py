"""The contract every training method fulfils, and the validated-config base class.

A method freezes the base, attaches its own trainable parameters (picked later by name, all names
carrying the method's prefix), turns what it learned into a `Patch`, and puts the model back the
way it found it. The loop knows nothing else about a method.
"""

from __future__ import annotations

import dataclasses
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from core.errors import ConfigError
from trainer.patch.types import Patch

SEVEN_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
REGULARIZERS = ("none", "alewr")


def doc(text: str, **kwargs: Any) -> Any:
    """A dataclass field carrying its documentation (shown by `--set` errors and `describe()`)."""
    return field(metadata={"doc": text}, **kwargs)


@dataclass
class MethodConfig:
    """Base of every method config. Subclasses add fields and extend `problems()`.

    `__post_init__` collects every problem before raising, so a user fixes all of them at once.
    """

    def problems(self) -> list[str]:
        return []

    def __post_init__(self) -> None:
        found = self.problems()
        if found:
            raise ConfigError(f"invalid {type(self).__name__}: " + "; ".join(found))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form stored in the patch metadata and the registry."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def describe(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


def check_targets(name: str, value: Any) -> list[str]:
    if not isinstance(value, tuple | list) or not value or not all(isinstance(v, str) and v for v in value):
        return [f"{name} must be a non-empty list of module names, e.g. {','.join(SEVEN_PROJECTIONS)}"]
    return []


def check_range(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [f"{name} must be a number in {'(' if lo_open else '['}{lo}, {hi}]"]
    if value > hi or value < lo or (lo_open and value == lo):
        return [f"{name}={value} is outside {'(' if lo_open else '['}{lo}, {hi}]"]
    return []


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> list[str]:
    if value not in allowed:
        return [f"{name}={value!r} is not one of {', '.join(allowed)}"]
    return []


@dataclass
class RegularizedConfig(MethodConfig):
    """Fields shared by the methods that compose with ALEWR (full, s2ft)."""

    regularize: str = doc(
        "'none' or 'alewr' (importance-weighted drift penalty, needs an importance file)", default="none"
    )
    alewr_lambda: float = doc("λ, weight of the ALEWR penalty; 0 trains exactly as without it", default=1.0)
    alewr_balance: float = doc(
        "β > 0 rescales λ each step to λ·β·stopgrad(CE / penalty) (dynamic balance); 0 keeps λ fixed",
        default=0.0,
    )
    importance: str | None = doc("path of the importance file from compute_importance()", default=None)

    def problems(self) -> list[str]:
        found = check_choice("regularize", self.regularize, REGULARIZERS)
        found += check_range("alewr_lambda", self.alewr_lambda, 0.0, float("inf"))
        found += check_range("alewr_balance", self.alewr_balance, 0.0, float("inf"))
        if self.importance is not None and not isinstance(self.importance, str):
            found.append("importance must be a file path")
        return found


def matching_linears(model: nn.Module, targets: tuple[str, ...] | list[str]) -> dict[str, nn.Linear]:
    """Linear modules whose name is a target or ends with '.target' (targets are short or full names).

    Raises ConfigError naming the targets that match nothing, so a typo never trains silently less."""
    found: dict[str, nn.Linear] = {}
    unmatched = set(targets)
    for name, module in model.named_modules():
        for target in targets:
            if name == target or name.endswith("." + target):
                if not isinstance(module, nn.Linear):
                    raise ConfigError(f"target module {name!r} is a {type(module).__name__}, not a Linear")
                found[name] = module
                unmatched.discard(target)
    if unmatched:
        raise ConfigError(f"target_modules {sorted(unmatched)} match no Linear module of the model")
    return found


def layer_of(module_name: str) -> str:
    """Group key for per-layer coefficients: 'layers.3' for decoder layer 3, else the name itself."""
    match = re.search(r"layers\.(\d+)\.", module_name)
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

    def alewr_terms(self, prepared: Prepared, config: MethodConfig, omega: dict[str, torch.Tensor]) -> list:
        """(layer, parameter, anchor or None, Ω) tuples for the ALEWR penalty; only some methods can."""
        raise ConfigError(f"method {self.name!r} does not support regularize='alewr' (use full or s2ft)")


def new_patch(method: Method, config: MethodConfig, deltas: dict) -> Patch:
    return Patch(method=method.name, method_config=config.to_dict(), deltas=deltas)
