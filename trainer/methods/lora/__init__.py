"""LoRA through PEFT: W + (α/r)·B·A on the target projections; the patch holds A, B and α/r."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from torch import nn

from trainer.methods.base import (
    SEVEN_PROJECTIONS,
    Method,
    MethodConfig,
    Prepared,
    check_range,
    check_targets,
    doc,
    matching_linears,
    new_patch,
)
from trainer.patch.types import LowRank, Patch

_ADAPTER = "default"
_PEFT_PREFIX = "base_model.model."


@dataclass
class LoraConfig(MethodConfig):
    r: int = doc("rank of B·A (≥ 1)", default=16)
    alpha: float = doc("scaling numerator: the update is (alpha/r)·B·A", default=32.0)
    dropout: float = doc("dropout on the adapter input, in [0, 1)", default=0.0)
    target_modules: tuple[str, ...] = doc(
        "Linear modules to adapt (short names such as q_proj, or full module names)",
        default=SEVEN_PROJECTIONS,
    )

    def problems(self) -> list[str]:
        found = []
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            found.append(f"r={self.r!r} must be an integer ≥ 1")
        found += check_range("alpha", self.alpha, 0.0, float("inf"), lo_open=True)
        found += check_range("dropout", self.dropout, 0.0, 0.999)
        found += check_targets("target_modules", self.target_modules)
        return found


class LoraMethod(Method):
    name = "lora"
    prefix = "lora_"
    config_cls = LoraConfig
    default_lr = 2e-4

    def attach(self, model: nn.Module, config: MethodConfig) -> tuple[nn.Module, dict[str, Any]]:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        assert isinstance(config, LoraConfig)
        targets = sorted(matching_linears(model, config.target_modules))
        peft_config = PeftLoraConfig(
            r=config.r,
            lora_alpha=config.alpha,  # type: ignore[arg-type]  # PEFT types it int; it takes any number
            lora_dropout=config.dropout,
            target_modules=targets,
            bias="none",
        )
        with warnings.catch_warnings():  # PEFT calls a transformers API deprecated in v5; not ours to fix
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            wrapped = get_peft_model(model, peft_config)
        return wrapped, {"targets": targets}

    def extract_patch(self, prepared: Prepared, config: MethodConfig) -> Patch:
        from peft.tuners.lora import LoraLayer

        deltas = {}
        for name, module in prepared.model.named_modules():
            layer: Any = module  # PEFT's ModuleDicts are untyped
            if isinstance(module, LoraLayer) and _ADAPTER in layer.lora_A:
                deltas[name.removeprefix(_PEFT_PREFIX)] = LowRank(
                    A=layer.lora_A[_ADAPTER].weight.detach().float().clone().cpu(),
                    B=layer.lora_B[_ADAPTER].weight.detach().float().clone().cpu(),
                    scale=float(layer.scaling[_ADAPTER]),
                )
        return new_patch(self, config, deltas)

    def cleanup(self, prepared: Prepared) -> nn.Module:
        peft_model: Any = prepared.model
        unloaded: nn.Module = peft_model.unload()
        return unloaded
