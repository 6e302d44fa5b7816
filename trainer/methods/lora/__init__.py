"""LoRA through PEFT: W + (α/r)·B·A on the target weights; the patch holds A, B and α/r.

Linear and Conv1D targets are PEFT `target_modules` (PEFT transposes for Conv1D); 3-D expert
parameters are PEFT `target_parameters`, one adapter per parameter holding every expert's pair:
lora_A is [experts·r, in] expert-major, lora_B [out, r·experts] expert-minor (PEFT's
`ParamWrapper.get_delta_weight`). The patch keeps one LowRank per expert.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from torch import nn

from core.errors import ConfigError
from trainer.methods.base import (
    TARGETS_DOC,
    Method,
    MethodConfig,
    Prepared,
    check_range,
    check_targets,
    doc,
    new_patch,
    targets_for,
)
from trainer.patch.targets import Target, whole_expert_params
from trainer.patch.types import LowRank, Patch

_ADAPTER = "default"
_PEFT_PREFIX = "base_model.model."


@dataclass
class LoraConfig(MethodConfig):
    r: int = doc("rank of B·A (≥ 1)", default=16)
    alpha: float = doc("scaling numerator: the update is (alpha/r)·B·A", default=32.0)
    dropout: float = doc("dropout on the adapter input, in [0, 1) (0 on MoE expert weights)", default=0.0)
    target_modules: tuple[str, ...] | None = doc(TARGETS_DOC, default=None)

    def problems(self) -> list[str]:
        found = []
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            found.append(f"r={self.r!r} must be an integer ≥ 1")
        found += check_range("alpha", self.alpha, 0.0, float("inf"), lo_open=True)
        found += check_range("dropout", self.dropout, 0.0, 0.999)
        found += check_targets("target_modules", self.target_modules)
        return found


def peft_targets(targets: dict[str, Target]) -> tuple[list[str], list[str]]:
    """(target_modules, target_parameters) for PEFT: full module names, and the 3-D expert
    parameters (PEFT adapts a parameter whole, so all its experts must be targeted)."""
    modules = sorted(n for n, t in targets.items() if t.is_module)
    return modules, sorted(whole_expert_params(targets, "lora"))


class LoraMethod(Method):
    name = "lora"
    prefix = "lora_"
    config_cls = LoraConfig
    default_lr = 2e-4

    def attach(self, model: nn.Module, config: MethodConfig) -> tuple[nn.Module, dict[str, Any]]:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        assert isinstance(config, LoraConfig)
        modules, parameters = peft_targets(targets_for(model, config.target_modules, self.name))
        if parameters and config.dropout:
            raise ConfigError(
                f"lora dropout={config.dropout} cannot apply to MoE expert weights ({parameters[0]}); "
                "set dropout=0 or target other weights"
            )
        peft_config = PeftLoraConfig(
            r=config.r,
            lora_alpha=config.alpha,  # type: ignore[arg-type]  # PEFT types it int; it takes any number
            lora_dropout=config.dropout,
            target_modules=modules or None,
            target_parameters=parameters or None,
            bias="none",
        )
        with (
            warnings.catch_warnings()
        ):  # PEFT notes Conv1D's fan_in_fan_out and a v5 deprecation; both handled
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*", category=UserWarning)
            wrapped = get_peft_model(model, peft_config)
        return wrapped, {"targets": modules + parameters}

    def extract_patch(self, prepared: Prepared, config: MethodConfig) -> Patch:
        from peft.tuners.lora import LoraLayer

        deltas: dict[str, LowRank] = {}
        for name, module in prepared.model.named_modules():
            layer: Any = module  # PEFT's ModuleDicts are untyped
            if not isinstance(module, LoraLayer) or _ADAPTER not in layer.lora_A:
                continue
            a = layer.lora_A[_ADAPTER].weight.detach().float().cpu()
            b = layer.lora_B[_ADAPTER].weight.detach().float().cpu()
            scale = float(layer.scaling[_ADAPTER])
            owner = name.removeprefix(_PEFT_PREFIX).removesuffix(".base_layer")
            parameter = getattr(layer, "parameter_name", None)
            if parameter is None:
                deltas[owner] = LowRank(A=a.clone(), B=b.clone(), scale=scale)
                continue
            experts = int(layer.num_experts)
            r = a.shape[0] // experts
            a3 = a.reshape(experts, r, a.shape[-1])
            b3 = b.reshape(b.shape[0], r, experts)
            for e in range(experts):
                deltas[f"{_owner_of(owner, parameter)}.{parameter}.{e}"] = LowRank(
                    A=a3[e].clone(), B=b3[:, :, e].clone(), scale=scale
                )
        return new_patch(self, config, deltas)

    def cleanup(self, prepared: Prepared) -> nn.Module:
        peft_model: Any = prepared.model
        unloaded: nn.Module = peft_model.unload()
        return unloaded


def _owner_of(name: str, parameter: str) -> str:
    """PEFT nests one ParamWrapper per parameter of a module (`experts.base_layer.base_layer`)."""
    while name.endswith(".base_layer"):
        name = name.removesuffix(".base_layer")
    return name
