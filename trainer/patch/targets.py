"""Patch targets on a live model: every weight a delta can land on, seen as [out, in].

A target is a Linear (`weight` is [out, in]), a Conv1D (GPT-2; `weight` is [in, out], so the
[out, in] view is its transpose) or one expert of a 3-D expert parameter (`<parameter>.<e>`, the
[out, in] slice `param[e]`). Views share storage, so in-place writes through `weight` land in the
model. Short target names match inside the decoder layers only (`core.arch`), so `q_proj` never
reaches a multimodal model's vision tower.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.arch import EXPERTS, Architecture, find_architecture, require_architecture
from core.arch import targets as arch_targets
from core.errors import ConfigError

HEAD = "lm_head"


def _conv1d_type() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a dependency
        return None
    return Conv1D


@dataclass
class Target:
    """One patchable weight. `module` owns it (for experts: the experts module, `param` its 3-D
    parameter and `expert` the slice)."""

    name: str
    module: nn.Module
    storage: str  # "linear", "conv1d" or "experts"
    param_name: str = "weight"
    expert: int | None = None

    @property
    def param(self) -> nn.Parameter:
        value = getattr(self.module, self.param_name)
        assert isinstance(value, torch.Tensor)
        return value  # type: ignore[return-value]

    @property
    def weight(self) -> torch.Tensor:
        """The [out, in] view of the weight (writes go to the model)."""
        p = self.param
        if self.storage == "conv1d":
            return p.T
        if self.expert is not None:
            return p[self.expert]
        return p

    @property
    def shape(self) -> tuple[int, int]:
        w = self.weight
        return int(w.shape[0]), int(w.shape[1])

    @property
    def bias(self) -> torch.Tensor | None:
        if self.expert is not None:
            return None
        bias = getattr(self.module, "bias", None)
        return bias if isinstance(bias, torch.Tensor) else None

    @property
    def is_module(self) -> bool:
        """Linear or Conv1D: a module PEFT can wrap (experts are PEFT `target_parameters`)."""
        return self.expert is None


def architecture_of(model: nn.Module) -> Architecture | None:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return find_architecture({"model_type": model_type}) if model_type else None


def all_targets(model: nn.Module) -> dict[str, Target]:
    """Every Linear, Conv1D and expert slice of `model`, by target name."""
    conv1d, arch = _conv1d_type(), architecture_of(model)
    found: dict[str, Target] = {}
    module: nn.Module
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found[name] = Target(name, module, "linear")
        elif conv1d is not None and isinstance(module, conv1d):
            found[name] = Target(name, module, "conv1d")
        for pname, param in module.named_parameters(recurse=False):
            if param.dim() == 3 and _is_expert_param(arch, name, pname):
                for e in range(param.shape[0]):
                    full = f"{name}.{pname}.{e}" if name else f"{pname}.{e}"
                    found[full] = Target(full, module, EXPERTS, pname, e)
    return found


def _is_expert_param(arch: Architecture | None, module_name: str, param_name: str) -> bool:
    if arch is None:
        return False
    path = re.sub(re.escape(arch.layers) + r"\.\d+\.", "", f"{module_name}.{param_name}", count=1)
    projection = arch.projection(path)
    return projection is not None and projection.storage == EXPERTS


def expert_parent(name: str) -> str:
    """`model.layers.0.mlp.experts.down_proj.3` -> `model.layers.0.mlp.experts.down_proj`, for a
    name known to be an expert slice (`core.arch.targets.expert_parent` also answers None)."""
    parent = arch_targets.expert_parent(name)
    assert parent is not None, f"{name} is no expert slice"
    return parent


def match_targets(
    model: nn.Module, targets: Sequence[str], arch: Architecture | None = None
) -> dict[str, Target]:
    """The model's weights that `targets` select (rules: `core.arch.targets`); ConfigError naming
    the targets that match nothing, so a typo never trains silently less."""
    arch = arch or architecture_of(model)
    everything = all_targets(model)
    modules = dict(model.named_modules())
    for wanted in targets:
        if wanted in modules and wanted not in everything and not isinstance(modules[wanted], nn.ModuleList):
            what = type(modules[wanted]).__name__
            raise ConfigError(f"target module {wanted!r} is a {what}, not a Linear, Conv1D or expert weight")
    experts = [n for n, t in everything.items() if not t.is_module]
    return {n: everything[n] for n in arch_targets.select(everything, targets, arch, experts)}


def whole_expert_params(targets: dict[str, Target], method: str) -> dict[str, list[Target]]:
    """Expert targets grouped by their 3-D parameter; ConfigError when only some experts of a
    parameter are targeted (these methods train an expert parameter whole)."""
    groups: dict[str, list[Target]] = {}
    for name, t in targets.items():
        if not t.is_module:
            groups.setdefault(expert_parent(name), []).append(t)
    for parent, chosen in groups.items():
        if len(chosen) != chosen[0].param.shape[0]:
            raise ConfigError(
                f"{method} trains an expert parameter whole: target {parent} (all its experts), "
                "not some of them"
            )
    return groups


def default_target_names(model: nn.Module, method: str) -> list[str]:
    """The architecture's default targets for `method` that this model has."""
    config: Any = model.config
    arch = require_architecture(config.to_dict(), "default targets")
    everything = all_targets(model)
    experts = [n for n, t in everything.items() if not t.is_module]
    return arch_targets.default_targets(arch, method, everything, experts)


def resolve(model: nn.Module, targets: Iterable[str] | None, method: str) -> dict[str, Target]:
    """The targets a method trains: `targets` as given, or the architecture's defaults for it."""
    names = list(targets) if targets is not None else default_target_names(model, method)
    return match_targets(model, names)
