"""Which weights a list of target names selects, by name alone (no torch).

The trainer matches against a live model's weights, the registry against a base's tensor table
(`core.arch.weight_sources`); both use these rules, so `patchreg train` refuses before queueing
exactly what the worker would refuse. A target is a full name, or a short or layer-relative name
(`q_proj`, `attn.c_attn`, `mlp.experts.down_proj`) that matches the end of a name *inside the
decoder layers*, so `q_proj` never reaches a multimodal model's vision tower. Naming a 3-D expert
parameter selects all its experts (`<parameter>.<e>`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from core.arch.spec import Architecture
from core.errors import ConfigError

_EXPERT = re.compile(r"^(.+)\.(\d+)$")


def expert_parent(name: str) -> str | None:
    """`...experts.down_proj.3` -> `...experts.down_proj`; None for a name that is no expert slice."""
    match = _EXPERT.match(name)
    return match.group(1) if match else None


def _hits(name: str, wanted: str, arch: Architecture | None, experts: bool) -> bool:
    candidates = [name]
    parent = expert_parent(name) if experts else None
    if parent is not None:
        candidates.append(parent)
    for candidate in candidates:
        if candidate == wanted:
            return True
        inside = arch is None or candidate.startswith(arch.layers + ".")
        if inside and candidate.endswith("." + wanted):
            return True
    return False


def select(
    names: Iterable[str], targets: Sequence[str], arch: Architecture | None, expert_names: Iterable[str] = ()
) -> list[str]:
    """The names among `names` that `targets` select, sorted; ConfigError naming the targets that
    select nothing. `expert_names` are the names that are expert slices."""
    experts = set(expert_names)
    pool = sorted(set(names))
    chosen: set[str] = set()
    unmatched = []
    for wanted in targets:
        hits = [n for n in pool if _hits(n, wanted, arch, n in experts)]
        if not hits:
            unmatched.append(wanted)
        chosen.update(hits)
    if unmatched:
        where = f" inside {arch.layers}.N" if arch else ""
        raise ConfigError(
            f"target_modules {sorted(unmatched)} match no Linear, Conv1D or expert weight{where}"
            + (
                f" (this {arch.name} model's defaults: {','.join(arch.default_targets('lora'))})"
                if arch
                else ""
            )
        )
    return sorted(chosen)


def default_targets(
    arch: Architecture, method: str, names: Iterable[str], expert_names: Iterable[str] = ()
) -> list[str]:
    """The architecture's default targets for `method`; each must exist among `names`, so a model
    that does not fit its description is refused instead of trained on less than it says."""
    pool, experts = sorted(set(names)), set(expert_names)
    wanted = list(arch.default_targets(method))
    missing = [t for t in wanted if not any(_hits(n, t, arch, n in experts) for n in pool)]
    if missing:
        raise ConfigError(
            f"this model lacks {arch.name} weights {missing} that the architecture description lists; "
            "set target_modules explicitly"
        )
    return wanted
