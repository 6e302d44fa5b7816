"""A base version's architecture as the registry sees it: its catalog entry and its runtime weights.

Patches name *runtime* weights (Linear, Conv1D or expert slices `<parameter>.<e>`, every delta
[out, in]); a base version keeps only its checkpoint's tensor table, under *saved* names. Every
comparison of a patch with a base (registration, compat, fetch shapes, training checks) reads
`runtime_weights`, so a GPT-2 Conv1D, a Mixtral expert, a Gemma 3 multimodal weight or a tied
`lm_head` is found exactly where the trainer will find it, without loading anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

from core.arch import (
    EXPERTS,
    Architecture,
    WeightSource,
    dims_of,
    find_architecture,
    unknown_message,
    weight_sources,
)
from core.arch import targets as arch_targets
from core.arch.spec import PARTS, S2FT_UNITS
from core.arch.table import METHODS
from core.serving import BaseFacts
from registry.models import BaseVersion
from registry.schemas import ArchitectureRead, MethodTargetsRead

# S²FT trains whole units of the output side of each coupled block by default (o heads, down
# channels); each explicit ratio names the part whose rows or columns it trains.
S2FT_DEFAULT_PARTS = ("o", "down")
S2FT_RATIO_PARTS = {f"{kind}_ratio": part for kind, (part, _) in S2FT_UNITS.items()}
UNRECORDED = "no config recorded (registered before patchreg kept configs): architecture from model_type"


def base_config(version: BaseVersion) -> dict[str, Any]:
    """The recorded config.json dict, or just the model_type for versions registered before 0003
    (the catalog is keyed by model_type, so their architecture is still found)."""
    return version.config if version.config is not None else {"model_type": version.model_type}


def architecture_of(version: BaseVersion) -> Architecture | None:
    return find_architecture(base_config(version))


def runtime_weights(version: BaseVersion) -> dict[str, WeightSource]:
    """Runtime target name -> the checkpoint tensors it is made of (`core.arch.weight_sources`)."""
    return weight_sources(architecture_of(version), version.tensor_table)


def runtime_shapes(version: BaseVersion) -> dict[str, tuple[int, int]]:
    """{runtime target: (out, in)}: what a patch's deltas must fit, and what one-hot exports need."""
    return {name: source.shape for name, source in runtime_weights(version).items()}


def serving_facts(version: BaseVersion) -> BaseFacts:
    """What `core.serving` needs about a base: model type, target shapes, a tied head."""
    weights = runtime_weights(version)
    head = weights.get("lm_head")
    return BaseFacts(
        model_type=version.model_type,
        shapes={name: source.shape for name, source in weights.items()},
        tied_head=bool(head is not None and head.tied),
    )


def expert_names(arch: Architecture | None, names: Iterable[str]) -> list[str]:
    """The names among `names` that are expert slices (`<3-D expert parameter>.<e>`): target names
    that select the parameter select all of them (`core.arch.targets.select`)."""
    if arch is None:
        return []
    params = {p.path for p in arch.projections if p.storage == EXPERTS}
    inside = re.compile(re.escape(arch.layers) + r"\.\d+\.(.+)$")
    found = []
    for name in names:
        parent = arch_targets.expert_parent(name)
        where = inside.match(parent) if parent else None
        if where is not None and where.group(1) in params:
            found.append(name)
    return found


def _ordered(parts: Iterable[str]) -> list[str]:
    chosen = set(parts)
    return [p for p in PARTS if p in chosen]


def _computed(arch: Architecture, paths: Iterable[str]) -> set[str]:
    return {part for path in paths if (p := arch.projection(path)) for part in p.parts}


def method_targets(arch: Architecture, method: str) -> MethodTargetsRead:
    """A method's default targets on `arch`: the projections `arch.default_targets(method)` names
    (lora, full, propulsion), or for s2ft the projections computing its default parts."""
    if method == "s2ft":
        paths = [p.path for part in S2FT_DEFAULT_PARTS for p in arch.with_part(part)]
        optional = [part for part in ("v", "up") if arch.with_part(part)]
        return MethodTargetsRead(
            method=method, parts=list(S2FT_DEFAULT_PARTS), targets=paths, optional_parts=optional
        )
    paths = list(arch.default_targets(method))
    parts = _computed(arch, paths) & set(arch.default_parts(method))
    return MethodTargetsRead(method=method, parts=_ordered(parts), targets=paths)


def _dims(config: Mapping[str, Any], arch: Architecture) -> dict[str, int] | None:
    try:
        dims = asdict(dims_of(config, arch))
    except (TypeError, ValueError, ZeroDivisionError):  # a config with odd sizes shows none
        return None
    return dims if dims.get("layers") and dims.get("hidden") else None


def describe(version: BaseVersion) -> ArchitectureRead:
    """What `patchreg base show` and the API's base detail say about the architecture."""
    arch = architecture_of(version)
    if arch is None:
        return ArchitectureRead(
            model_type=version.model_type,
            name=None,
            layers=None,
            methods=[],
            dims=None,
            note=unknown_message(version.model_type),
        )
    return ArchitectureRead(
        model_type=version.model_type,
        name=arch.name,
        layers=arch.layers,
        methods=[method_targets(arch, m) for m in METHODS],
        dims=_dims(version.config, arch) if version.config is not None else None,
        note=None if version.config is not None else UNRECORDED,
    )
