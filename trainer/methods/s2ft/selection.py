"""Which heads and channels S²FT trains: a seeded uniform sample pooled across all layers.

Pooled sampling (not an equal count per layer) follows the reference implementation. Indexing
instead of permuting makes grouped-query attention a non-issue: o_proj columns are per attention
head, v_proj rows per *KV* head, so each unit's slice is taken in its own module's layout.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.errors import ConfigError

# kind -> (module suffix, "columns" or "rows", unit: "head", "kv_head" or "channel")
KINDS = {
    "o": ("self_attn.o_proj", "columns", "head"),
    "v": ("self_attn.v_proj", "rows", "kv_head"),
    "d": ("mlp.down_proj", "columns", "channel"),
    "u": ("mlp.up_proj", "rows", "channel"),
}


@dataclass(frozen=True)
class Shape:
    """What selection needs to know about a Llama-style decoder."""

    layers: dict[int, dict[str, str]]  # layer index -> kind -> module name
    head_dim: int
    heads: int
    kv_heads: int
    channels: int
    hidden: int
    total_params: int


def model_shape(model: nn.Module) -> Shape:
    config: Any = model.config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    layers: dict[int, dict[str, str]] = {}
    for name, module in model.named_modules():
        for kind, (suffix, _, _) in KINDS.items():
            match = re.search(r"layers\.(\d+)\." + re.escape(suffix) + "$", name)
            if match and isinstance(module, nn.Linear):
                layers.setdefault(int(match.group(1)), {})[kind] = name
    if not layers:
        raise ConfigError("s2ft needs a Llama-style decoder (model.layers.N.self_attn.o_proj, mlp.down_proj)")
    return Shape(
        layers=layers,
        head_dim=head_dim,
        heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        channels=config.intermediate_size,
        hidden=config.hidden_size,
        total_params=sum(p.numel() for p in model.parameters()),
    )


def units_per_layer(shape: Shape, kind: str) -> int:
    unit = KINDS[kind][2]
    return {"head": shape.heads, "kv_head": shape.kv_heads, "channel": shape.channels}[unit]


def unit_slice(shape: Shape, kind: str, unit: int) -> range:
    """Indices (into columns or rows of the module) that one unit covers."""
    if KINDS[kind][2] == "channel":
        return range(unit, unit + 1)
    return range(unit * shape.head_dim, (unit + 1) * shape.head_dim)


def select(shape: Shape, counts: dict[str, int], seed: int) -> dict[str, tuple[str, torch.Tensor]]:
    """Module name -> (kind of slice, sorted indices), for `counts[kind]` units pooled over layers."""
    chosen: dict[str, tuple[str, torch.Tensor]] = {}
    for kind, count in counts.items():
        if count <= 0:
            continue
        layers = sorted(layer for layer, mods in shape.layers.items() if kind in mods)
        pool = [(layer, unit) for layer in layers for unit in range(units_per_layer(shape, kind))]
        picked = random.Random(f"s2ft:{seed}:{kind}").sample(pool, min(count, len(pool)))
        per_module: dict[str, list[int]] = {}
        for layer, unit in picked:
            per_module.setdefault(shape.layers[layer][kind], []).extend(unit_slice(shape, kind, unit))
        for module, idx in per_module.items():
            chosen[module] = (KINDS[kind][1], torch.tensor(sorted(idx), dtype=torch.long))
    return chosen
