"""Propulsion: y = (Wx + b) ⊙ z^k per chosen Linear, z an fp32 vector initialised to ones.

z stays fp32 and the power is taken in fp32 (one bf16 ULP above 1.0 raised to k=15 already moves
the scale by ~12%); only the product is cast back to the activation dtype. At init z^k = 1, so the
model's output equals the base's exactly. The patch stores s = z^k (fp32), applied as diag(s)·W.

A 3-D MoE expert parameter [experts, out, in] has no module of its own to wrap: it gets a
parametrization (`torch.nn.utils.parametrize`), W'[e] = diag(z[e]^k)·W[e] with z [experts, out],
and the patch one scale per expert (`<parameter>.<e>`). Cleanup removes the parametrization and
leaves the original parameter in place, untouched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from core.errors import ConfigError
from trainer.methods.base import (
    TARGETS_DOC,
    Method,
    MethodConfig,
    Prepared,
    check_targets,
    doc,
    new_patch,
    set_submodule,
    targets_for,
)
from trainer.patch.targets import whole_expert_params
from trainer.patch.types import Patch, Scale


@dataclass
class PropulsionConfig(MethodConfig):
    degree: int = doc("k in z^k; it multiplies the effective learning rate of z (≥ 1)", default=15)
    target_modules: tuple[str, ...] | None = doc(TARGETS_DOC, default=None)

    def problems(self) -> list[str]:
        found = check_targets("target_modules", self.target_modules)
        if isinstance(self.degree, bool) or not isinstance(self.degree, int) or not 1 <= self.degree <= 200:
            found.append(f"degree={self.degree!r} must be an integer in [1, 200]")
        return found


class PropulsionLinear(nn.Module):
    """A frozen Linear or Conv1D whose output is rescaled per output feature by z^k."""

    def __init__(self, base: nn.Module, out_features: int, degree: int) -> None:
        super().__init__()
        self.base = base
        self.degree = degree
        weight = base.weight
        assert isinstance(weight, torch.Tensor)
        self.propulsion_z = nn.Parameter(torch.ones(out_features, dtype=torch.float32, device=weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        return (y.float() * self.propulsion_z.pow(self.degree)).to(y.dtype)


class PropulsionExperts(nn.Module):
    """Parametrization of a 3-D expert parameter: each expert's rows scaled by its own z^k."""

    def __init__(self, param: torch.Tensor, degree: int) -> None:
        super().__init__()
        self.degree = degree
        experts, out_features = int(param.shape[0]), int(param.shape[1])
        self.propulsion_z = nn.Parameter(
            torch.ones(experts, out_features, dtype=torch.float32, device=param.device)
        )

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """diag(z[e]^k)·W[e] for every expert, in fp32 and cast back: what `apply_patch` computes."""
        s = self.propulsion_z.pow(self.degree)
        return (s[:, :, None] * weight.float()).to(weight.dtype)


def _cache_per_call(module: nn.Module) -> None:
    """Compute `module`'s parametrized weights once per forward call: an eager experts forward
    indexes its 3-D parameter once per routed expert, which would rescale all of it each time."""
    forward = module.forward

    def cached_forward(*args: Any, **kwargs: Any) -> Any:
        with parametrize.cached():
            return forward(*args, **kwargs)

    setattr(module, "forward", cached_forward)  # noqa: B010  # an instance attribute, removed by cleanup


@dataclass
class _Parametrized:
    """One expert parameter under a PropulsionExperts parametrization."""

    name: str  # the parameter's full name, `<module>.<parameter>`
    module: nn.Module
    param_name: str
    scale: PropulsionExperts


class PropulsionMethod(Method):
    name = "propulsion"
    prefix = "propulsion_"
    config_cls = PropulsionConfig
    default_lr = 1e-3

    def attach(self, model: nn.Module, config: MethodConfig) -> tuple[nn.Module, dict[str, Any]]:
        assert isinstance(config, PropulsionConfig)
        embeddings = [t for t in config.target_modules or () if isinstance(_get(model, t), nn.Embedding)]
        if embeddings:
            raise ConfigError(
                f"propulsion cannot target embeddings {embeddings}: a scale patch acts on Linear outputs"
            )
        wrapped = {}
        targets = targets_for(model, config.target_modules, self.name)
        parametrized = []
        for parent, experts in sorted(whole_expert_params(targets, self.name).items()):
            t = experts[0]
            scale = PropulsionExperts(t.param, config.degree)
            if not parametrize.is_parametrized(t.module):
                _cache_per_call(t.module)
            parametrize.register_parametrization(t.module, t.param_name, scale)
            parametrized.append(_Parametrized(parent, t.module, t.param_name, scale))
        for name, target in targets.items():
            if target.is_module:
                module = PropulsionLinear(target.module, target.shape[0], config.degree)
                set_submodule(model, name, module)
                wrapped[name] = module
        return model, {"wrapped": wrapped, "parametrized": parametrized}

    def extract_patch(self, prepared: Prepared, config: MethodConfig) -> Patch:
        deltas = {
            name: Scale(s=m.propulsion_z.detach().float().pow(m.degree).cpu())
            for name, m in prepared.state["wrapped"].items()
        }
        for p in prepared.state["parametrized"]:
            s = p.scale.propulsion_z.detach().float().pow(p.scale.degree).cpu()
            deltas.update({f"{p.name}.{e}": Scale(s=s[e].clone()) for e in range(s.shape[0])})
        return new_patch(self, config, deltas)

    def cleanup(self, prepared: Prepared) -> nn.Module:
        for name, m in prepared.state["wrapped"].items():
            set_submodule(prepared.model, name, m.base)
        for p in prepared.state["parametrized"]:  # puts the original Parameter back, as it was
            parametrize.remove_parametrizations(p.module, p.param_name, leave_parametrized=False)
            p.module.__dict__.pop("forward", None)
        return prepared.model


def _get(model: nn.Module, target: str) -> nn.Module | None:
    for name, module in model.named_modules():
        if name == target or name.endswith("." + target):
            return module
    return None
