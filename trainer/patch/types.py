"""The patch data model: per-module deltas of five kinds (see DESIGN.md, "Patch format").

Module names are those of `model.named_modules()` on a transformers causal LM, e.g.
`model.layers.0.self_attn.o_proj`. Shapes follow torch's `nn.Linear.weight`: [out, in].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from core.patchfile import FORMAT_VERSION, TENSOR_NAMES


@dataclass
class LowRank:
    """W += scale · B @ A  (LoRA)."""

    A: torch.Tensor  # [r, in]
    B: torch.Tensor  # [out, r]
    scale: float

    kind = "lowrank"


@dataclass
class Columns:
    """W[:, idx] += values  (S²FT on o_proj / down_proj)."""

    idx: torch.Tensor  # [k] int64
    values: torch.Tensor  # [out, k]

    kind = "columns"


@dataclass
class Rows:
    """W[idx, :] += values  (S²FT on v_proj / up_proj)."""

    idx: torch.Tensor  # [k] int64
    values: torch.Tensor  # [k, in]

    kind = "rows"


@dataclass
class Scale:
    """W = diag(s) · W, bias too  (Propulsion, s = z^k; kept in fp32)."""

    s: torch.Tensor  # [out] float32

    kind = "scale"


@dataclass
class Dense:
    """W += delta  (full fine-tuning)."""

    delta: torch.Tensor  # [out, in]

    kind = "dense"


Delta = LowRank | Columns | Rows | Scale | Dense
DELTA_KINDS: dict[str, type] = {cls.kind: cls for cls in (LowRank, Columns, Rows, Scale, Dense)}


@dataclass
class Patch:
    """A set of per-module deltas plus the method that made them.

    The base binding (which base version it belongs to) lives in the registry, not here, so a
    ported patch reuses the same bytes.
    """

    method: str
    method_config: dict[str, Any]
    deltas: dict[str, Delta]
    format_version: int = FORMAT_VERSION
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def modules(self) -> list[str]:
        return sorted(self.deltas)

    @property
    def num_params(self) -> int:
        """Stored parameters (indices excluded): what the method trained."""
        total = 0
        for d in self.deltas.values():
            if isinstance(d, LowRank):
                total += d.A.numel() + d.B.numel()
            elif isinstance(d, Columns | Rows):
                total += d.values.numel()
            elif isinstance(d, Scale):
                total += d.s.numel()
            else:
                total += d.delta.numel()
        return total


def delta_shapes(delta: Delta) -> dict[str, tuple[int, ...]]:
    """Tensor shapes by file name (A, B, idx, values, s, delta), as `core.fit` reads them."""
    return {name: tuple(getattr(delta, name).shape) for name in TENSOR_NAMES[delta.kind]}


def max_index(delta: Delta) -> int | None:
    """The largest selected row/column of a columns/rows delta; None for the other kinds."""
    return int(delta.idx.max()) if isinstance(delta, Columns | Rows) else None
