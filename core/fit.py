"""Does a patched module fit a weight? The one rule, for every place that asks it.

Registration asks it of a patch and its own base (from the tensor table), compatibility of a patch
and another base version, apply of a patch and a live model. Each delta kind implies part of the
weight's [out, in] shape from its tensors (a lowrank delta both dimensions, a columns delta only
`out`); an index-selecting delta also needs its largest index inside the selected axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Misfit:
    """Why a module does not fit: `code` is `module_missing` or `shape_mismatch`."""

    code: str
    module: str
    message: str
    expected: Any = None
    found: Any = None


def required_weight_shape(kind: str, shapes: Mapping[str, Sequence[int]]) -> tuple[int | None, int | None]:
    """(out, in) that a delta's tensors imply; None where the delta does not fix that dimension."""
    if kind == "lowrank":
        return shapes["B"][0], shapes["A"][-1]
    if kind == "columns":
        return shapes["values"][0], None
    if kind == "rows":
        return None, shapes["values"][-1]
    if kind == "scale":
        return shapes["s"][0], None
    out_dim, in_dim = shapes["delta"]
    return out_dim, in_dim


def _shown(kind: str, required: tuple[int | None, int | None], max_index: int | None) -> str:
    axis = {"columns": 1, "rows": 0}.get(kind)
    dims = []
    for i, dim in enumerate(required):
        if dim is not None:
            dims.append(str(dim))
        elif i == axis and max_index is not None:
            dims.append(f">{max_index}")
        else:
            dims.append("?")
    return f"[{', '.join(dims)}]"


def module_misfit(
    module: str,
    kind: str,
    shapes: Mapping[str, Sequence[int]],
    weight: Sequence[int] | None,
    *,
    target: str,
    max_index: int | None = None,
    expected_weight: Sequence[int] | None = None,
) -> Misfit | None:
    """Why `module`'s delta cannot apply to `weight` (a 2-D shape in `target`), or None when it can.

    `max_index` is the largest index of a columns/rows delta when the data is at hand. With
    `expected_weight` (the module's shape on the patch's own base) the weight must equal it too:
    a port onto a module that changed shape is refused even where the delta would still fit.
    """
    if weight is None or len(weight) != 2:
        found = "nothing" if weight is None else f"a {len(weight)}-D tensor"
        return Misfit(
            "module_missing",
            module,
            f"module {module}: patch ({kind}) needs a 2-D linear weight, {target} has {found}",
            expected=list(expected_weight) if expected_weight is not None else None,
        )
    out_dim, in_dim = int(weight[0]), int(weight[1])
    required = required_weight_shape(kind, shapes)
    axis_size = {"columns": in_dim, "rows": out_dim}.get(kind)
    fits = (
        required[0] in (None, out_dim)
        and required[1] in (None, in_dim)
        and (axis_size is None or max_index is None or max_index < axis_size)
        and (expected_weight is None or tuple(expected_weight) == (out_dim, in_dim))
    )
    if fits:
        return None
    needed = (
        f"[{', '.join(map(str, expected_weight))}]"
        if expected_weight is not None
        else _shown(kind, required, max_index)
    )
    return Misfit(
        "shape_mismatch",
        module,
        f"module {module}: patch ({kind}) expects weight {needed}, {target} has [{out_dim}, {in_dim}]",
        expected=list(expected_weight) if expected_weight is not None else None,
        found=[out_dim, in_dim],
    )
