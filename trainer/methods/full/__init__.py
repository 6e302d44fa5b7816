"""Full fine-tuning of chosen Linear modules; the patch holds W_after − W_before in fp32."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainer.methods.base import (
    SEVEN_PROJECTIONS,
    Method,
    MethodConfig,
    Prepared,
    WeightView,
    check_targets,
    doc,
    matching_linears,
    new_patch,
)
from trainer.patch.tying import untie
from trainer.patch.types import Dense, Patch


@dataclass
class FullConfig(MethodConfig):
    target_modules: tuple[str, ...] = doc(
        "Linear modules whose weights train (short names such as q_proj, or full module names)",
        default=SEVEN_PROJECTIONS,
    )

    def problems(self) -> list[str]:
        return check_targets("target_modules", self.target_modules)


class FullMethod(Method):
    name = "full"
    prefix = "weight"
    config_cls = FullConfig
    default_lr = 1e-5

    def attach(self, model: nn.Module, config: MethodConfig) -> tuple[nn.Module, dict[str, Any]]:
        assert isinstance(config, FullConfig)
        linears = matching_linears(model, config.target_modules)
        # A tied lm_head trains its own copy: the patch then holds what apply will add to lm_head
        # alone, and the input embeddings never move (PEFT leaves them alone too).
        ties = [tie for m in linears.values() if (tie := untie(model, m)) is not None]
        before = {name: m.weight.detach().clone() for name, m in linears.items()}
        return model, {"linears": linears, "before": before, "ties": ties}

    def select_params(self, wrapped: nn.Module, state: dict[str, Any]) -> dict[str, nn.Parameter]:
        """The target weights themselves, named `<module>.weight` (biases stay frozen)."""
        return {f"{name}.weight": m.weight for name, m in state["linears"].items()}

    def extract_patch(self, prepared: Prepared, config: MethodConfig) -> Patch:
        deltas = {
            name: Dense(delta=(m.weight.detach().float() - prepared.state["before"][name].float()).cpu())
            for name, m in prepared.state["linears"].items()
        }
        return new_patch(self, config, deltas)

    def cleanup(self, prepared: Prepared) -> nn.Module:
        """Restore the base weights bit for bit, so the model is the base again."""
        with torch.no_grad():
            for name, m in prepared.state["linears"].items():
                m.weight.copy_(prepared.state["before"][name])
                m.weight.requires_grad_(False)
        for tie in prepared.state["ties"]:
            tie.retie()
        return prepared.model

    def weight_views(self, prepared: Prepared) -> list[WeightView]:
        """Each trained weight whole, anchored at its base value."""
        return [
            WeightView(name, m.weight, anchor=prepared.state["before"][name])
            for name, m in prepared.state["linears"].items()
        ]
