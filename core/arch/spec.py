"""What patchreg knows about a transformers architecture, as data (no torch).

A decoder layer holds projections. Each projection computes one or more *parts* (q, k, v, o,
gate, up, down): Llama's `self_attn.q_proj` computes q alone, Phi-3's `self_attn.qkv_proj` q, k
and v stacked along its output rows. A projection's weight is stored one of three ways:

- `linear`: `nn.Linear.weight`, [out, in];
- `conv1d`: GPT-2's `Conv1D.weight`, [in, out] (patches still speak [out, in]: the transpose);
- `experts`: a 3-D parameter [experts, out, in] (transformers 5 MoE); each expert's [out, in]
  slice is a patch target of its own, named `<parameter>.<expert>`.

Patch targets are *runtime* names (`model.named_modules()`, plus expert slices). Checkpoints may
save other names (Gemma 3's `language_model.model.` prefix, Mixtral's per-expert `w1/w2/w3`);
`core.arch.naming` maps between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LINEAR, CONV1D, EXPERTS = "linear", "conv1d", "experts"
CONCAT, GROUPED = "concat", "grouped"
PARTS = ("q", "k", "v", "o", "gate", "up", "down")
# S²FT's unit kinds (its `<kind>_ratio` settings): the part each trains, and whether a unit is a
# slice of that part's input columns or output rows.
S2FT_UNITS = {"o": ("o", "columns"), "v": ("v", "rows"), "d": ("down", "columns"), "u": ("up", "rows")}


@dataclass(frozen=True)
class Projection:
    """One weight of a decoder layer.

    `path` is relative to the layer (`self_attn.q_proj`; for experts the 3-D parameter,
    `mlp.experts.down_proj`). Fused q/k/v rows are laid out `concat` ([q heads | k heads | v heads])
    or `grouped` ([kv head, q heads of the group + k + v, head_dim]: GPT-NeoX, Falcon). Fused
    gate/up rows are [gate | up]. `saved` lists, for experts, the per-expert checkpoint tensors
    stacked along the output rows (`{e}` is the expert index), relative to the layer."""

    path: str
    parts: tuple[str, ...]
    storage: str = LINEAR
    layout: str = CONCAT
    saved: tuple[str, ...] = ()

    @property
    def fused(self) -> bool:
        return len(self.parts) > 1

    @property
    def leaf(self) -> str:
        return self.path.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Dims:
    """The sizes that locate heads and channels inside a projection."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class Architecture:
    """A family of `model_type`s that share module names and weight layouts.

    `layers` is the runtime prefix of decoder layers; `text_config` the key of the language model's
    config inside a multimodal config; `renames` pairs a runtime name prefix with the prefix the
    checkpoint saves it under. `defaults` names, per method, the parts its targets cover when the
    user sets none (`"*"` for the methods not listed)."""

    name: str
    model_types: tuple[str, ...]
    layers: str
    projections: tuple[Projection, ...]
    text_config: str | None = None
    renames: tuple[tuple[str, str], ...] = ()
    defaults: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    example: str = ""  # a real checkpoint of this family, for the docs

    def projection(self, path: str) -> Projection | None:
        return next((p for p in self.projections if p.path == path), None)

    def with_part(self, part: str) -> list[Projection]:
        return [p for p in self.projections if part in p.parts]

    def default_parts(self, method: str) -> tuple[str, ...]:
        return tuple(self.defaults.get(method, self.defaults.get("*", PARTS)))

    def default_targets(self, method: str) -> tuple[str, ...]:
        """Layer-relative paths of the projections a method trains when no targets are set: every
        projection computing one of the method's default parts."""
        parts = set(self.default_parts(method))
        return tuple(p.path for p in self.projections if parts & set(p.parts))


def text_config(config: Mapping[str, Any], arch: Architecture | None) -> Mapping[str, Any]:
    """The language model's config: the nested one for multimodal wrappers, else `config`."""
    if arch is not None and arch.text_config and isinstance(config.get(arch.text_config), Mapping):
        nested: Mapping[str, Any] = config[arch.text_config]
        return nested
    return config


def _first(config: Mapping[str, Any], *keys: str) -> Any:
    return next((config[k] for k in keys if config.get(k) is not None), None)


def dims_of(config: Mapping[str, Any], arch: Architecture | None = None) -> Dims:
    """Layer count, hidden size, heads, KV heads and head size from a config.json dict, under the
    names each family uses (GPT-2 `n_head`, Falcon `multi_query`/`num_kv_heads`, ...)."""
    c = text_config(config, arch)
    hidden = int(_first(c, "hidden_size", "n_embd", "d_model") or 0)
    heads = int(_first(c, "num_attention_heads", "n_head") or 1)
    kv: Any = _first(c, "num_key_value_heads")
    if c.get("model_type") == "falcon":
        if c.get("new_decoder_architecture"):
            kv = _first(c, "num_kv_heads") or heads
        else:
            kv = 1 if c.get("multi_query", True) else heads
    head_dim = int(_first(c, "head_dim") or (hidden // heads if heads else 0))
    return Dims(
        layers=int(_first(c, "num_hidden_layers", "n_layer") or 0),
        hidden=hidden,
        heads=heads,
        kv_heads=int(kv or heads),
        head_dim=head_dim,
    )


def head_rows(projection: Projection, part: str, dims: Dims, head: int) -> range:
    """Output rows of `projection` that `part` ("q", "k" or "v") computes for one head (a KV head
    for k and v): the unit S²FT trains inside a fused q/k/v projection."""
    hd = dims.head_dim
    if not projection.fused:
        return range(head * hd, (head + 1) * hd)
    if projection.layout == GROUPED:
        per_group = dims.heads // dims.kv_heads + 2
        slot = {"k": per_group - 2, "v": per_group - 1}[part]
        start = (head * per_group + slot) * hd
        return range(start, start + hd)
    offsets = {"q": 0, "k": dims.heads * hd, "v": (dims.heads + dims.kv_heads) * hd}
    start = offsets[part] + head * hd
    return range(start, start + hd)


def channel_offset(projection: Projection, part: str, out_rows: int) -> tuple[int, int]:
    """(first row, channel count) of `part` ("gate" or "up") in a projection with `out_rows` rows:
    a fused [gate | up] splits its rows in two halves."""
    if not projection.fused:
        return 0, out_rows
    width = out_rows // len(projection.parts)
    return projection.parts.index(part) * width, width
