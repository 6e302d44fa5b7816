"""S²FT: structured sparse fine-tuning of whole attention heads and FFN channels.

Default budget: ~1% of the model's parameters, half on o_proj head columns and half on down_proj
channel columns (the output side of each coupled block, as the released configs do). Explicit
`o_ratio/d_ratio/v_ratio/u_ratio` (fractions of all layer×unit pairs) replace the budget. The
patch holds Columns deltas (o_proj, down_proj) and Rows deltas (v_proj, up_proj).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from core.errors import ConfigError
from trainer.methods.base import (
    Method,
    MethodConfig,
    Prepared,
    WeightView,
    check_choice,
    check_range,
    doc,
    new_patch,
    set_submodule,
)
from trainer.methods.s2ft.layers import S2ColumnsLinear, S2ExpertSlices, S2RowsLinear
from trainer.methods.s2ft.selection import KINDS, Shape, model_shape, select
from trainer.patch.targets import Target, all_targets, expert_parent
from trainer.patch.types import Columns, Patch, Rows

BACKPROP = ("sliced", "autograd")


@dataclass
class S2ftConfig(MethodConfig):
    budget: float = doc("fraction of all model parameters to train when no *_ratio is set", default=0.01)
    attn_share: float = doc(
        "share of the budget on o_proj heads (the rest on down_proj channels)", default=0.5
    )
    o_ratio: float | None = doc(
        "fraction of all (layer, head) pairs whose o_proj columns train", default=None
    )
    d_ratio: float | None = doc(
        "fraction of all (layer, channel) pairs whose down_proj column trains", default=None
    )
    v_ratio: float | None = doc(
        "fraction of all (layer, KV head) pairs whose v_proj rows train", default=None
    )
    u_ratio: float | None = doc(
        "fraction of all (layer, channel) pairs whose up_proj row trains", default=None
    )
    seed: int = doc("seed of the random head/channel selection", default=0)
    backprop: str = doc(
        "'sliced': custom autograd Function saving x[..., idx]; 'autograd': stock autograd", default="sliced"
    )

    def problems(self) -> list[str]:
        found = check_range("budget", self.budget, 0.0, 1.0, lo_open=True)
        found += check_range("attn_share", self.attn_share, 0.0, 1.0)
        for name in ("o_ratio", "d_ratio", "v_ratio", "u_ratio"):
            value = getattr(self, name)
            if value is not None:
                found += check_range(name, value, 0.0, 1.0)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            found.append(f"seed={self.seed!r} must be an integer")
        found += check_choice("backprop", self.backprop, BACKPROP)
        return found

    def counts(self, shape: Shape) -> dict[str, int]:
        """Number of units per kind: from explicit ratios, else from the budget (≥ 1 of each side).

        An explicit ratio the model cannot honour (no projection computes that part) is an error,
        never dropped."""
        ratios = {k: getattr(self, f"{k}_ratio") for k in ("o", "d", "v", "u")}
        if any(r is not None for r in ratios.values()):
            counts = {}
            for k, r in ratios.items():
                units = shape.units(k)
                if r and not units:
                    raise ConfigError(
                        f"s2ft {k}_ratio={r}: this {shape.arch.name} model has no "
                        f"{KINDS[k][0]} projection to train"
                    )
                counts[k] = max(1, round(r * units)) if r else 0
            return counts
        attn = self.budget * self.attn_share * shape.total_params
        ffn = self.budget * (1 - self.attn_share) * shape.total_params
        o = min(shape.units("o"), max(1, round(attn / shape.unit_params("o")))) if self.attn_share > 0 else 0
        d = min(shape.units("d"), max(1, round(ffn / shape.unit_params("d")))) if self.attn_share < 1 else 0
        return {"o": o, "d": d}


class S2ftMethod(Method):
    name = "s2ft"
    prefix = "s2ft_"
    config_cls = S2ftConfig
    default_lr = 2e-4

    def attach(self, model: nn.Module, config: MethodConfig) -> tuple[nn.Module, dict[str, Any]]:
        assert isinstance(config, S2ftConfig)
        shape = model_shape(model)
        targets = all_targets(model)
        wrapped: dict[str, nn.Module] = {}
        experts: dict[str, tuple[Target, dict[int, torch.Tensor], int]] = {}
        for name, (kind, idx) in select(shape, config.counts(shape), config.seed).items():
            target = targets[name]
            out_features, in_features = target.shape
            if target.expert is not None:
                entry = experts.setdefault(expert_parent(name), (target, {}, 1 if kind == "columns" else 0))
                entry[1][target.expert] = idx
                continue
            if kind == "columns":
                sliced = config.backprop == "sliced"
                module: nn.Module = S2ColumnsLinear(target.module, idx, out_features, sliced=sliced)
            else:
                module = S2RowsLinear(target.module, idx, in_features)
            set_submodule(model, name, module)
            wrapped[name] = module
        slices: dict[str, S2ExpertSlices] = {}
        for parent, (target, selected, axis) in experts.items():
            slices[parent] = S2ExpertSlices(target.param, axis, selected)
            parametrize.register_parametrization(target.module, target.param_name, slices[parent])
        owners = {parent: (experts[parent][0].module, experts[parent][0].param_name) for parent in experts}
        return model, {"wrapped": wrapped, "experts": slices, "owners": owners}

    def extract_patch(self, prepared: Prepared, config: MethodConfig) -> Patch:
        deltas: dict[str, Columns | Rows] = {}
        for name, m in prepared.state["wrapped"].items():
            idx = m.idx.detach().cpu().clone()
            values = m.s2ft_delta.detach().float().cpu().clone()
            deltas[name] = (
                Columns(idx=idx, values=values)
                if isinstance(m, S2ColumnsLinear)
                else Rows(idx=idx, values=values)
            )
        for parent, slices in prepared.state["experts"].items():
            for e in slices.experts:
                idx, values = (
                    slices.idx(e).detach().cpu().clone(),
                    slices.delta(e).detach().float().cpu().clone(),
                )
                deltas[f"{parent}.{e}"] = (
                    Columns(idx=idx, values=values) if slices.axis == 1 else Rows(idx, values)
                )
        return new_patch(self, config, deltas)

    def cleanup(self, prepared: Prepared) -> nn.Module:
        for name, m in prepared.state["wrapped"].items():
            set_submodule(prepared.model, name, m.base)
        for owner, param_name in prepared.state["owners"].values():
            parametrize.remove_parametrizations(owner, param_name, leave_parametrized=False)
        return prepared.model

    def weight_views(self, prepared: Prepared) -> list[WeightView]:
        """Each delta as the columns (o, down) or rows (v, up) of its target's [out, in] weight;
        the anchor is None: the delta starts at zero, so its value is the drift from the base."""
        views = []
        for name, m in prepared.state["wrapped"].items():
            views.append(
                WeightView(
                    name,
                    m.s2ft_delta,
                    anchor=None,
                    axis=1 if isinstance(m, S2ColumnsLinear) else 0,
                    index=m.idx,
                    transposed=not isinstance(m.base, nn.Linear),
                )
            )
        for parent, slices in prepared.state["experts"].items():
            for e in slices.experts:
                views.append(
                    WeightView(
                        f"{parent}.{e}",
                        slices.delta(e),
                        axis=slices.axis,
                        index=slices.idx(e),
                        key=parent,
                        expert=e,
                    )
                )
        return views
