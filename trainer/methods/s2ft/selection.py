"""Which heads and channels S²FT trains: a seeded uniform sample pooled across all layers.

Where a unit lives comes from the architecture description (`core.arch`): an attention head's
o-projection columns, a KV head's v rows (inside a fused q/k/v in its concat or grouped layout),
an FFN channel's down column and up row (inside a fused [gate | up], per expert in MoE layers).
Pooled sampling (not an equal count per layer) follows the reference implementation; indexing
instead of permuting makes grouped-query attention a non-issue.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.arch import Architecture, Dims, Projection, dims_of, require_architecture
from core.arch.spec import S2FT_UNITS, channel_offset, head_rows
from core.errors import ConfigError
from trainer.patch.targets import Target, all_targets

KINDS = S2FT_UNITS  # kind -> (part of the architecture, "columns" or "rows")


@dataclass(frozen=True)
class Block:
    """`count` units inside one target weight: unit j covers indices start + j·stride + [0, width)
    along the target's columns or rows."""

    target: str
    slice_kind: str  # "columns" or "rows"
    start: int
    stride: int
    width: int
    count: int
    unit_params: int  # parameters one unit trains

    def indices(self, unit: int) -> range:
        first = self.start + unit * self.stride
        return range(first, first + self.width)


@dataclass(frozen=True)
class Shape:
    """What selection needs to know about a model: its blocks per kind, in pool order."""

    arch: Architecture
    dims: Dims
    blocks: dict[str, list[Block]]
    total_params: int

    def units(self, kind: str) -> int:
        return sum(b.count for b in self.blocks.get(kind, []))

    def unit_params(self, kind: str) -> int:
        blocks = self.blocks.get(kind, [])
        return blocks[0].unit_params if blocks else 0


def _layer_targets(
    arch: Architecture, projection: Projection, layer: int, found: dict[str, Target]
) -> list[Target]:
    name = f"{arch.layers}.{layer}.{projection.path}"
    if name in found:
        return [found[name]]
    experts = sorted(
        (t for n, t in found.items() if t.expert is not None and n.rsplit(".", 1)[0] == name),
        key=lambda t: t.expert or 0,
    )
    return experts


def _block(kind: str, projection: Projection, target: Target, dims: Dims) -> Block:
    part, slice_kind = KINDS[kind]
    out_rows, in_cols = target.shape
    if part == "o":
        if in_cols != dims.heads * dims.head_dim:
            raise ConfigError(
                f"s2ft: {target.name} has {in_cols} input columns, expected heads×head_dim = "
                f"{dims.heads}×{dims.head_dim}; the architecture description does not fit this model"
            )
        return Block(
            target.name, slice_kind, 0, dims.head_dim, dims.head_dim, dims.heads, out_rows * dims.head_dim
        )
    if part == "v":
        first = head_rows(projection, "v", dims, 0)
        second = head_rows(projection, "v", dims, 1) if dims.kv_heads > 1 else first
        stride = second.start - first.start or dims.head_dim
        return Block(
            target.name,
            slice_kind,
            first.start,
            stride,
            dims.head_dim,
            dims.kv_heads,
            dims.head_dim * in_cols,
        )
    if part == "down":
        return Block(target.name, slice_kind, 0, 1, 1, in_cols, out_rows)
    start, channels = channel_offset(projection, "up", out_rows)
    return Block(target.name, slice_kind, start, 1, 1, channels, in_cols)


def model_shape(model: nn.Module) -> Shape:
    config: Any = model.config
    arch = require_architecture(config.to_dict(), "S²FT head and channel layout")
    dims = dims_of(config.to_dict(), arch)
    found = all_targets(model)
    blocks: dict[str, list[Block]] = {}
    for layer in range(dims.layers):
        for kind, (part, _) in KINDS.items():
            for projection in arch.with_part(part):
                for target in _layer_targets(arch, projection, layer, found):
                    blocks.setdefault(kind, []).append(_block(kind, projection, target, dims))
    return Shape(arch, dims, blocks, total_params=sum(p.numel() for p in model.parameters()))


def select(shape: Shape, counts: dict[str, int], seed: int) -> dict[str, tuple[str, torch.Tensor]]:
    """Target name -> (kind of slice, sorted indices), for `counts[kind]` units pooled over layers."""
    chosen: dict[str, tuple[str, list[int]]] = {}
    for kind, count in counts.items():
        blocks = shape.blocks.get(kind, [])
        if count <= 0 or not blocks:
            continue
        ends = []
        total = 0
        for block in blocks:
            total += block.count
            ends.append(total)
        picked = random.Random(f"s2ft:{seed}:{kind}").sample(range(total), min(count, total))
        for unit in picked:
            i = bisect.bisect_right(ends, unit)
            block = blocks[i]
            local = unit - (ends[i - 1] if i else 0)
            entry = chosen.setdefault(block.target, (block.slice_kind, []))
            if entry[0] != block.slice_kind:
                raise ConfigError(f"s2ft would train both rows and columns of {block.target}")
            entry[1].extend(block.indices(local))
    return {name: (kind, torch.tensor(sorted(idx), dtype=torch.long)) for name, (kind, idx) in chosen.items()}
