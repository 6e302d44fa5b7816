"""The ALEWR drift penalty: λ · Σ_l γ_l · R_l,  R_l = Σ_{i ∈ layer l} Ω_i (θ_i − θ*_i)².

γ_l = stopgrad(R_l / Σ_m R_m) weights up the layers that currently drift most on important
weights. With `balance` = β > 0, λ is rescaled every step to λ·β·stopgrad(CE / Σ γ_l R_l), so
the penalty stays a fixed fraction of CE (its gradient then grows like 1/drift near θ*, so keep β
small). λ = 0 builds no penalty at all: training is then exactly plain training.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn

from core.errors import ConfigError
from trainer.methods.base import Method, Prepared, WeightView, layer_of
from trainer.regularizers.alewr import AlewrConfig, unsupported


@dataclass
class Term:
    layer: str
    param: nn.Parameter
    anchor: torch.Tensor | None  # θ*; None means zero (a delta parameter)
    omega: torch.Tensor


class AlewrPenalty:
    """Callable the loop invokes once per optimizer step with the step's CE value."""

    def __init__(self, terms: list[Term], lam: float, balance: float) -> None:
        self.terms = terms
        self.lam = lam
        self.balance = balance
        self.last_layers: dict[str, float] = {}

    def layer_drifts(self) -> dict[str, torch.Tensor]:
        by_layer: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), dtype=torch.float32))
        for t in self.terms:
            drift = t.param.float() if t.anchor is None else t.param.float() - t.anchor.float()
            r = (t.omega * drift.square()).sum()
            by_layer[t.layer] = by_layer[t.layer].to(r.device) + r
        return dict(by_layer)

    def __call__(self, ce: float) -> torch.Tensor:
        drifts = self.layer_drifts()
        values = torch.stack(list(drifts.values()))
        denom = values.detach().sum()
        gamma = values.detach() / denom if denom > 0 else torch.full_like(values, 1.0 / len(values))
        total = (gamma * values).sum()
        scale = self.lam
        if self.balance > 0 and float(total.detach()) > 0:
            scale = self.lam * self.balance * ce / float(total.detach())
        self.last_layers = {k: float(v.detach()) for k, v in drifts.items()}
        return scale * total


def build_penalty(
    method: Method, prepared: Prepared, config: AlewrConfig, device: torch.device
) -> AlewrPenalty | None:
    """The penalty for this run, or None when λ = 0 (the file and the views are checked anyway)."""
    if not config.importance:
        raise ConfigError("regularize='alewr' needs an importance file (from compute_importance)")
    from trainer.regularizers.alewr.importance import load_importance

    views = method.weight_views(prepared)
    if views is None:
        raise ConfigError(unsupported(method))
    omega = load_importance(config.importance)
    terms = [
        Term(
            layer_of(view.module),
            view.param,
            None if view.anchor is None else view.anchor.to(device),
            omega_of(omega, view).to(device=device, dtype=torch.float32),
        )
        for view in views
    ]
    if config.lambda_ == 0:
        return None
    return AlewrPenalty(terms, config.lambda_, config.balance)


def omega_of(omega: dict[str, torch.Tensor], view: WeightView) -> torch.Tensor:
    """Ω of the weight the view covers: whole, or gathered at its columns/rows of the target's
    [out, in] weight (one expert of a 3-D parameter, a Conv1D weight transposed)."""
    key = view.importance_key
    if key not in omega:
        raise ConfigError(
            f"the importance file has no entry for {key}; compute it for the weights this method trains"
        )
    if view.axis is None:
        return omega[key]
    assert view.index is not None
    weight = omega[key]
    if view.expert is not None:
        weight = weight[view.expert]
    if view.transposed:
        weight = weight.T
    return weight.to(view.index.device).index_select(view.axis, view.index)


def weighted_drift(terms: list[Term]) -> float:
    """Σ Ω (θ − θ*)² over all terms: the quantity ALEWR keeps small (used by tests and reports)."""
    return float(sum(float(v) for v in AlewrPenalty(terms, 1.0, 0.0).layer_drifts().values()))
