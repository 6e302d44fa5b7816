"""Full fine-tuning of chosen weights; the patch holds W_after − W_before in fp32, as [out, in].

A bf16/fp16 base trains fp32 master copies of the target weights, put back bit for bit after.
Linear and Conv1D weights train as they are (a Conv1D delta is transposed into [out, in] when the
patch is made); a 3-D expert parameter trains whole and gives one delta per expert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainer.methods.base import (
    TARGETS_DOC,
    Method,
    MethodConfig,
    Prepared,
    WeightView,
    check_targets,
    doc,
    new_patch,
    targets_for,
)
from trainer.patch.targets import Target, whole_expert_params
from trainer.patch.tying import untie
from trainer.patch.types import Dense, Patch


@dataclass
class FullConfig(MethodConfig):
    target_modules: tuple[str, ...] | None = doc(TARGETS_DOC, default=None)

    def problems(self) -> list[str]:
        return check_targets("target_modules", self.target_modules)


@dataclass
class _Trained:
    """One trained parameter (storage layout) and the targets it holds."""

    param_name: str  # the parameter's name in the model: the key of its importance entry
    owner: nn.Module
    attr: str
    targets: list[Target]

    @property
    def param(self) -> nn.Parameter:
        value = getattr(self.owner, self.attr)
        assert isinstance(value, nn.Parameter)
        return value


def _trained(model: nn.Module, targets: dict[str, Target]) -> list[_Trained]:
    experts = whole_expert_params(targets, "full")
    out = [
        _Trained(f"{n}.weight", t.module, "weight", [t]) for n, t in sorted(targets.items()) if t.is_module
    ]
    out += [_Trained(parent, ts[0].module, ts[0].param_name, ts) for parent, ts in sorted(experts.items())]
    return out


class FullMethod(Method):
    name = "full"
    prefix = "weight"
    config_cls = FullConfig
    default_lr = 1e-5

    def attach(self, model: nn.Module, config: MethodConfig) -> tuple[nn.Module, dict[str, Any]]:
        assert isinstance(config, FullConfig)
        trained = _trained(model, targets_for(model, config.target_modules, self.name))
        # A tied lm_head trains its own copy: the patch then holds what apply will add to lm_head
        # alone, and the input embeddings never move (PEFT leaves them alone too).
        ties = [tie for t in trained if t.attr == "weight" and (tie := untie(model, t.owner)) is not None]
        before = {t.param_name: t.param.detach().clone() for t in trained}
        for t in trained:  # fp32 master copies of bf16/fp16 weights: the optimizer steps in fp32
            if t.param.dtype != torch.float32:
                t.param.data = t.param.data.float()
        return model, {"trained": trained, "before": before, "ties": ties}

    def select_params(self, wrapped: nn.Module, state: dict[str, Any]) -> dict[str, nn.Parameter]:
        """The target weights themselves, by parameter name (biases stay frozen)."""
        return {t.param_name: t.param for t in state["trained"]}

    def extract_patch(self, prepared: Prepared, config: MethodConfig) -> Patch:
        deltas: dict[str, Dense] = {}
        for t in prepared.state["trained"]:
            param = t.param
            change = param.detach().float() - prepared.state["before"][t.param_name].float()
            for target in t.targets:
                if target.storage == "conv1d":
                    deltas[target.name] = Dense(delta=change.T.contiguous().cpu())
                elif target.expert is not None:
                    deltas[target.name] = Dense(delta=change[target.expert].clone().cpu())
                else:
                    deltas[target.name] = Dense(delta=change.cpu())
        return new_patch(self, config, deltas)

    def cleanup(self, prepared: Prepared) -> nn.Module:
        """Restore the base weights bit for bit, so the model is the base again."""
        with torch.no_grad():
            for t in prepared.state["trained"]:
                t.param.data = prepared.state["before"][t.param_name]  # dtype and bits as they were
                t.param.requires_grad_(False)
        for tie in prepared.state["ties"]:
            tie.retie()
        return prepared.model

    def weight_views(self, prepared: Prepared) -> list[WeightView]:
        """Each trained parameter whole, in its storage layout, anchored at its base value."""
        return [
            WeightView(
                t.targets[0].name, t.param, anchor=prepared.state["before"][t.param_name], key=t.param_name
            )
            for t in prepared.state["trained"]
        ]
