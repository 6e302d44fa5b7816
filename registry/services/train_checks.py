"""Training settings checked against the base's architecture, before a job row exists.

The worker would refuse the same settings minutes later, after loading the model; here the base
version's recorded architecture and tensor table answer without torch: named `target_modules`
must select one of the base's runtime weights (the trainer's own rule, `core.arch.targets`),
default targets need a known architecture, and S²FT needs one that computes each part it is asked
to train. Every refusal is one InvalidInput line (exit 1 in the CLI, 422 in the API).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.arch import targets as arch_targets
from core.arch import unknown_message
from core.arch.spec import Architecture
from core.errors import ConfigError, InvalidInput
from core.method_config import method_settings
from registry.models import BaseVersion
from registry.services.architecture import (
    S2FT_RATIO_PARTS,
    architecture_of,
    expert_names,
    runtime_weights,
)
from registry.services.lookup import base_ref

TARGETS_KEY = "target_modules"
NONE_WORDS = frozenset({"", "none", "null"})


def _split(item: str) -> tuple[str, str]:
    key, _, raw = item.partition("=")
    return key.strip(), raw.strip()


def _ratio(key: str, raw: Any) -> float | None:
    if raw is None or (isinstance(raw, str) and raw.lower() in NONE_WORDS):
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"--set {key}={raw!r}: expected a number") from None


def _targets(raw: Any) -> list[str] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return None if raw.lower() in NONE_WORDS else [t.strip() for t in raw.split(",") if t.strip()]
    if isinstance(raw, list | tuple) and all(isinstance(t, str) for t in raw):
        return list(raw)
    raise InvalidInput(f"{TARGETS_KEY}={raw!r}: expected a list of weight names, e.g. q_proj,v_proj")


def requested(
    method: str, overrides: Sequence[str], method_config: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The settings this check reads (S²FT's ratios, every other method's `target_modules`), from
    `--set key=value` strings (the last one of a key wins, as in the trainer) or a stored config."""
    values: dict[str, Any] = dict(method_settings(method_config)) if method_config else {}
    for item in overrides:
        key, raw = _split(item)
        values[key] = raw
    if method == "s2ft":
        return {key: _ratio(key, values.get(key)) for key in S2FT_RATIO_PARTS}
    return {TARGETS_KEY: _targets(values.get(TARGETS_KEY))}


def check_s2ft(arch: Architecture | None, model_type: str, ratios: Mapping[str, float | None]) -> None:
    """S²FT picks attention heads and FFN channels by role: it needs a catalog entry, and one that
    computes each part an explicit ratio > 0 asks for."""
    if arch is None:
        raise InvalidInput(unknown_message(model_type, "attention heads or FFN channels that s2ft can find"))
    for key, part in S2FT_RATIO_PARTS.items():
        value = ratios.get(key)
        if value is not None and value > 0 and not arch.with_part(part):
            raise InvalidInput(
                f"s2ft: {key}={value:g} trains the {part!r} part, but no {arch.name} projection computes it"
            )


def check_against_base(version: BaseVersion, method: str, settings: Mapping[str, Any]) -> None:
    """Refuse (InvalidInput, one line) settings that cannot train on `version`'s architecture."""
    arch = architecture_of(version)
    if method == "s2ft":
        check_s2ft(arch, version.model_type, settings)
        return
    targets = settings.get(TARGETS_KEY)
    names = list(runtime_weights(version))
    experts = expert_names(arch, names)
    try:
        if targets is not None:
            arch_targets.select(names, targets, arch, experts)
        elif arch is None:
            raise InvalidInput(unknown_message(version.model_type, "default targets"))
        else:
            arch_targets.default_targets(arch, method, names, experts)
    except ConfigError as exc:
        raise InvalidInput(f"{base_ref(version)}: {exc.message}") from None
