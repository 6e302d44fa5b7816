"""S²FT: structured sparse fine-tuning of whole attention heads and FFN channels.

Default budget: ~1% of the model's parameters, half on o_proj head columns and half on down_proj
channel columns (the output side of each coupled block, as the released configs do). Explicit
`o_ratio/d_ratio/v_ratio/u_ratio` (fractions of all layer×unit pairs) replace the budget. The
patch holds Columns deltas (o_proj, down_proj) and Rows deltas (v_proj, up_proj).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

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
from trainer.methods.s2ft.layers import S2ColumnsLinear, S2RowsLinear
from trainer.methods.s2ft.selection import Shape, model_shape, select, units_per_layer
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
        """Number of units per kind: from explicit ratios, else from the budget (≥ 1 of each side)."""
        ratios = {k: getattr(self, f"{k}_ratio") for k in ("o", "d", "v", "u")}
        layers = len(shape.layers)
        if any(r is not None for r in ratios.values()):
            return {
                k: max(1, round(r * layers * units_per_layer(shape, k))) if r else 0
                for k, r in ratios.items()
            }
        head_params = shape.hidden * shape.head_dim
        attn = self.budget * self.attn_share * shape.total_params
        ffn = self.budget * (1 - self.attn_share) * shape.total_params
        o = min(layers * shape.heads, max(1, round(attn / head_params))) if self.attn_share > 0 else 0
        d = min(layers * shape.channels, max(1, round(ffn / shape.hidden))) if self.attn_share < 1 else 0
        return {"o": o, "d": d}


class S2ftMethod(Method):
    name = "s2ft"
    prefix = "s2ft_"
    config_cls = S2ftConfig
    default_lr = 2e-4

    def attach(self, model: nn.Module, config: MethodConfig) -> tuple[nn.Module, dict[str, Any]]:
        assert isinstance(config, S2ftConfig)
        shape = model_shape(model)
        wrapped: dict[str, nn.Module] = {}
        for name, (kind, idx) in select(shape, config.counts(shape), config.seed).items():
            base = model.get_submodule(name)
            assert isinstance(base, nn.Linear), f"{name} is selected by shape as a Linear"
            if kind == "columns":
                module: nn.Module = S2ColumnsLinear(base, idx, sliced=config.backprop == "sliced")
            else:
                module = S2RowsLinear(base, idx)
            set_submodule(model, name, module)
            wrapped[name] = module
        return model, {"wrapped": wrapped}

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
        return new_patch(self, config, deltas)

    def cleanup(self, prepared: Prepared) -> nn.Module:
        for name, m in prepared.state["wrapped"].items():
            set_submodule(prepared.model, name, m.base)
        return prepared.model

    def weight_views(self, prepared: Prepared) -> list[WeightView]:
        """Each delta as the columns (o_proj, down_proj) or rows (v_proj, up_proj) it adds to; the
        anchor is None: the delta starts at zero, so its value is the drift from the base."""
        return [
            WeightView(
                name,
                m.s2ft_delta,
                anchor=None,
                axis=1 if isinstance(m, S2ColumnsLinear) else 0,
                index=m.idx,
            )
            for name, m in prepared.state["wrapped"].items()
        ]
