"""Which architecture a config is, and how runtime weight names map to checkpoint tensors.

Patches name runtime weights; the registry only has the checkpoint's tensor table. `weight_sources`
bridges the two without loading anything: for each runtime target, the saved tensors it is made
of (several for a Mixtral expert's gate_up, stacked along rows), whether they are stored [in, out]
(Conv1D), or which tensor a tied weight shares.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.arch.catalog import BY_MODEL_TYPE
from core.arch.spec import CONV1D, EXPERTS, Architecture
from core.errors import Unsupported

# Where a tied lm_head's weight lives when the checkpoint saves no lm_head.weight.
EMBEDDING_LEAVES = ("embed_tokens", "wte", "word_embeddings", "embed_in")
HEAD = "lm_head"


def known_model_types() -> list[str]:
    return sorted(BY_MODEL_TYPE)


def find_architecture(config: Mapping[str, Any]) -> Architecture | None:
    """The catalog entry for a config.json dict, or None for a model_type patchreg does not know."""
    return BY_MODEL_TYPE.get(str(config.get("model_type", "")))


def require_architecture(config: Mapping[str, Any], what: str) -> Architecture:
    """The catalog entry, or Unsupported naming what works without one (`what` needs the entry)."""
    arch = find_architecture(config)
    if arch is None:
        raise Unsupported(unknown_message(config.get("model_type"), what))
    return arch


def unknown_message(model_type: Any, what: str = "default targets") -> str:
    return (
        f"model_type {model_type!r} is not in patchreg's architecture catalog, so it has no {what}; "
        "set the Linear modules to train with --set target_modules=NAME,... (lora, full, propulsion), "
        "or add the architecture to core/arch/catalog.py (README: 'Add an architecture'); known: "
        + ", ".join(known_model_types())
    )


def _swap_prefix(name: str, old: str, new: str) -> str | None:
    if name == old or name.startswith(old + "."):
        return new + name[len(old) :]
    return None


def to_saved(arch: Architecture | None, name: str) -> str:
    """The checkpoint name of a runtime name (Gemma 3: `model.language_model.x` is saved as
    `language_model.model.x`)."""
    for runtime, saved in arch.renames if arch else ():
        if (renamed := _swap_prefix(name, runtime, saved)) is not None:
            return renamed
    return name


def to_runtime(arch: Architecture | None, name: str) -> str:
    for runtime, saved in arch.renames if arch else ():
        if (renamed := _swap_prefix(name, saved, runtime)) is not None:
            return renamed
    return name


@dataclass(frozen=True)
class WeightSource:
    """The checkpoint tensors one runtime [out, in] weight is made of: `pieces` stacked along rows,
    each stored transposed when `transposed` (Conv1D)."""

    pieces: tuple[str, ...]
    shape: tuple[int, int]
    transposed: bool = False
    tied: bool = False  # a tied lm_head: `pieces` is the input embedding it shares


def _layer_path(arch: Architecture, runtime: str) -> tuple[int, str] | None:
    match = re.match(re.escape(arch.layers) + r"\.(\d+)\.(.+)$", runtime)
    return (int(match.group(1)), match.group(2)) if match else None


def weight_sources(arch: Architecture | None, table: Iterable[Sequence[Any]]) -> dict[str, WeightSource]:
    """Runtime target name -> WeightSource, from a tensor table of [name, shape, dtype] rows: every
    2-D weight (transposed back for Conv1D), every expert of every 3-D expert parameter, and a tied
    lm_head that the checkpoint does not save."""
    shapes = {str(row[0]): tuple(int(d) for d in row[1]) for row in table}
    conv1d = {p.path for p in arch.projections if p.storage == CONV1D} if arch else set()
    sources: dict[str, WeightSource] = {}
    for name, shape in shapes.items():
        if not name.endswith(".weight") or len(shape) != 2:
            continue
        runtime = to_runtime(arch, name.removesuffix(".weight"))
        where = _layer_path(arch, runtime) if arch else None
        if where is not None and where[1] in conv1d:
            sources[runtime] = WeightSource((name,), (shape[1], shape[0]), transposed=True)
        else:
            sources[runtime] = WeightSource((name,), (shape[0], shape[1]))
    if arch is not None:
        sources.update(_expert_sources(arch, shapes))
        for target in [t for t in sources if _is_expert_piece(arch, t)]:
            del sources[target]
    if HEAD not in sources:
        embedding = _embedding(sources)
        if embedding is not None:
            sources[HEAD] = WeightSource(sources[embedding].pieces, sources[embedding].shape, tied=True)
    return sources


def _is_expert_piece(arch: Architecture, runtime: str) -> bool:
    where = _layer_path(arch, runtime)
    if where is None:
        return False
    for projection in arch.projections:
        for template in projection.saved:
            if re.fullmatch(re.escape(template).replace(r"\{e\}", r"\d+"), where[1]):
                return True
    return False


def _expert_sources(arch: Architecture, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, WeightSource]:
    found: dict[str, WeightSource] = {}
    for projection in (p for p in arch.projections if p.storage == EXPERTS):
        for layer in range(_layer_count(arch, shapes)):
            expert = 0
            while True:
                names = [
                    to_saved(arch, f"{arch.layers}.{layer}.{t.format(e=expert)}") + ".weight"
                    for t in projection.saved
                ]
                if not all(n in shapes and len(shapes[n]) == 2 for n in names):
                    break
                out = sum(shapes[n][0] for n in names)
                found[f"{arch.layers}.{layer}.{projection.path}.{expert}"] = WeightSource(
                    tuple(names), (out, shapes[names[0]][1])
                )
                expert += 1
    return found


def _layer_count(arch: Architecture, shapes: Mapping[str, tuple[int, ...]]) -> int:
    pattern = re.compile(re.escape(to_saved(arch, arch.layers)) + r"\.(\d+)\.")
    indices = [int(m.group(1)) for name in shapes if (m := pattern.match(name))]
    return max(indices) + 1 if indices else 0


def _embedding(sources: Mapping[str, WeightSource]) -> str | None:
    candidates = [n for n in sources if n.rsplit(".", 1)[-1] in EMBEDDING_LEAVES and "vision" not in n]
    return sorted(candidates, key=len)[0] if candidates else None
