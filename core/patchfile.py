"""The patch file specification, read from the safetensors header alone (no torch).

A patch is one safetensors file. Its string metadata holds `format_version`, `method`,
`method_config` (JSON object) and `modules` (JSON object: module -> {"kind", "scale" for lowrank});
any other key is free-form metadata. Tensors are named `<module>.<name>`: A/B (lowrank), idx/values
(columns, rows), s (scale), delta (dense). Every delta speaks its target's [out, in] orientation.

Format 2 lets a module key name one expert of a 3-D MoE parameter, `<parameter>.<expert>`, and
Conv1D weights (stored [in, out]) as targets; format 1 files (Linear modules only) still load.
`build_header` checks everything that needs no tensor
data; the trainer adds the checks that do (finite values, index sanity) when it materialises tensors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import inputs
from core.arch.naming import EMBEDDING_LEAVES, HEAD
from core.errors import ConfigError, MalformedFile
from core.safetensors_header import TensorInfo, read_safetensors_header

FORMAT_VERSION = 2
SUPPORTED_FORMAT_VERSIONS = frozenset({1, FORMAT_VERSION})
METHOD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")  # the registry's method column holds 32
RESERVED_KEYS = ("format_version", "method", "method_config", "modules")
TENSOR_NAMES: dict[str, tuple[str, ...]] = {
    "lowrank": ("A", "B"),
    "columns": ("idx", "values"),
    "rows": ("idx", "values"),
    "scale": ("s",),
    "dense": ("delta",),
}
KINDS = tuple(TENSOR_NAMES)
FLOAT_DTYPES = frozenset({"F32", "BF16", "F16"})
LORA_KINDS = frozenset({"lowrank", "columns", "rows"})
# Weights indexed by token id (every family's input embedding, and the head): a patch on one of them
# means something only under the tokenizer it was trained with.
EMBEDDING_MODULES = (*EMBEDDING_LEAVES, HEAD)
DENSE_MESSAGE = "dense patches (full fine-tuning) have no PEFT form; export --format merged instead"


@dataclass(frozen=True)
class ModuleSpec:
    """One patched module as the header describes it."""

    name: str
    kind: str
    tensors: dict[str, TensorInfo]
    scale: float | None = None  # lowrank only

    @property
    def rank(self) -> int | None:
        """LoRA rank for lowrank, k (selected rows/columns) for columns/rows, None otherwise."""
        if self.kind == "lowrank":
            return self.tensors["A"].shape[0]
        if self.kind in ("columns", "rows"):
            return self.tensors["idx"].shape[0]
        return None

    @property
    def num_params(self) -> int:
        return sum(t.numel for name, t in self.tensors.items() if name != "idx")

    @property
    def touches_embeddings(self) -> bool:
        return self.name.rsplit(".", 1)[-1] in EMBEDDING_MODULES

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: info.shape for name, info in self.tensors.items()}


@dataclass(frozen=True)
class PatchHeader:
    """Everything a patch file says about itself without reading tensor data."""

    format_version: int
    method: str
    method_config: dict[str, Any]
    modules: dict[str, ModuleSpec]
    metadata: dict[str, str] = field(default_factory=dict)  # the free-form keys

    @property
    def num_params(self) -> int:
        return sum(m.num_params for m in self.modules.values())

    @property
    def export_rank(self) -> int | None:
        """The largest LoRA rank a PEFT export writes (vLLM's `max_lora_rank` must cover it)."""
        return lora_export_rank((m.kind, m.rank) for m in self.modules.values())

    @property
    def peft_adapter(self) -> str | None:
        """ "LORA" or "IA3" when the patch has a PEFT form, else None (dense, or mixed kinds)."""
        try:
            return peft_adapter_type(m.kind for m in self.modules.values())
        except ConfigError:
            return None


def lora_export_rank(kinds_and_ranks: Iterable[tuple[str, int | None]]) -> int | None:
    """Max LoRA rank over (kind, rank) pairs, or None when the export would not be LoRA."""
    pairs = list(kinds_and_ranks)
    if not pairs or any(kind not in LORA_KINDS for kind, _ in pairs):
        return None
    return max(int(rank) for _, rank in pairs if rank is not None)


def peft_adapter_type(kinds: Iterable[str]) -> str:
    """ "LORA" or "IA3" for a patch with these delta kinds; ConfigError when none fits."""
    found = set(kinds)
    if "dense" in found:
        raise ConfigError(DENSE_MESSAGE)
    if found == {"scale"}:
        return "IA3"
    if found <= LORA_KINDS:
        return "LORA"
    raise ConfigError(
        "patch mixes scale deltas (PEFT IA3) with lowrank/columns/rows deltas (PEFT LoRA); "
        "one PEFT adapter has one type, so export --format merged instead"
    )


def _err(where: str, message: str, module: str | None = None) -> MalformedFile:
    prefix = f"{where}: module '{module}': " if module is not None else f"{where}: "
    return MalformedFile(prefix + message)


def _json_object(text: str | None, key: str, where: str) -> dict[str, Any]:
    if text is None:
        raise _err(where, f"missing {key} in metadata")
    value = inputs.loads(text, f"{where}: {key} metadata", MalformedFile)
    if not isinstance(value, dict):
        raise _err(where, f"{key} metadata must be a JSON object, found {type(value).__name__}")
    return value


def _module_entry(module: str, entry: Any, where: str) -> tuple[str, float | None]:
    if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
        raise _err(where, 'entry in modules metadata must be {"kind": ...}', module)
    kind = entry["kind"]
    if kind not in TENSOR_NAMES:
        raise _err(where, f"unknown kind {kind!r} (known: {', '.join(KINDS)})", module)
    if kind != "lowrank":
        return kind, None
    scale = entry.get("scale")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise _err(where, f"lowrank scale must be a finite number, found {scale!r}", module)
    return kind, float(scale)


def _check_shapes(kind: str, t: Mapping[str, TensorInfo], module: str, where: str) -> None:
    def need(name: str, ndim: int, dtypes: frozenset[str]) -> tuple[int, ...]:
        info = t[name]
        if info.dtype not in dtypes:
            allowed = " or ".join(sorted(TensorInfo("", d, ()).dtype_name for d in dtypes))
            raise _err(where, f"{name} must be {allowed}, found {info.dtype_name}", module)
        if len(info.shape) != ndim:
            raise _err(where, f"{name} must be {ndim}-D, found shape {list(info.shape)}", module)
        if 0 in info.shape:
            raise _err(where, f"{name} is empty (shape {list(info.shape)})", module)
        return info.shape

    if kind == "lowrank":
        a, b = need("A", 2, FLOAT_DTYPES), need("B", 2, FLOAT_DTYPES)
        if a[0] != b[1]:
            raise _err(
                where, f"lowrank rank mismatch: A is {list(a)} (r={a[0]}), B is {list(b)} (r={b[1]})", module
            )
    elif kind in ("columns", "rows"):
        (k,) = need("idx", 1, frozenset({"I64"}))
        values = need("values", 2, FLOAT_DTYPES)
        axis = 1 if kind == "columns" else 0
        if values[axis] != k:
            layout = "[out, k]" if kind == "columns" else "[k, in]"
            raise _err(where, f"idx has {k} entries but values is {list(values)} (expected {layout})", module)
    elif kind == "scale":
        need("s", 1, frozenset({"F32"}))
    else:
        need("delta", 2, FLOAT_DTYPES)


def build_header(meta: Mapping[str, str] | None, infos: Mapping[str, TensorInfo], where: str) -> PatchHeader:
    """Validate metadata and the tensor table (names, dtypes, shapes) and describe the patch."""
    meta = dict(meta or {})
    version_text = meta.get("format_version")
    if version_text is None:
        raise _err(where, "missing format_version in metadata (not a patchreg patch?)")
    try:
        version = int(version_text)
    except ValueError:
        raise _err(where, f"format_version {version_text!r} is not an integer") from None
    if version not in SUPPORTED_FORMAT_VERSIONS:
        supported = ", ".join(map(str, sorted(SUPPORTED_FORMAT_VERSIONS)))
        raise _err(where, f"unsupported format_version {version} (this build reads {supported})")
    method = meta.get("method")
    if not method:
        raise _err(where, "missing method in metadata")
    if not METHOD_RE.fullmatch(method):
        raise _err(where, f"method {method[:40]!r} is not a method name (1-32 of A-Z a-z 0-9 . _ + -)")
    method_config = _json_object(meta.get("method_config", "{}"), "method_config", where)
    entries = _json_object(meta.get("modules"), "modules", where)
    if not entries:
        raise _err(where, "patch has no modules")
    kinds = {module: _module_entry(module, entry, where) for module, entry in entries.items()}
    expected = {f"{m}.{n}" for m, (kind, _) in kinds.items() for n in TENSOR_NAMES[kind]}
    unexpected = sorted(set(infos) - expected)
    if unexpected:
        raise _err(where, f"unexpected tensor {unexpected[0]!r} (not listed in modules metadata)")
    modules: dict[str, ModuleSpec] = {}
    for module, (kind, scale) in sorted(kinds.items()):
        missing = [n for n in TENSOR_NAMES[kind] if f"{module}.{n}" not in infos]
        if missing:
            raise _err(where, f"{kind} delta is missing tensor {module}.{missing[0]}", module)
        own = {n: infos[f"{module}.{n}"] for n in TENSOR_NAMES[kind]}
        _check_shapes(kind, own, module, where)
        modules[module] = ModuleSpec(module, kind, own, scale)
    extra = {k: v for k, v in meta.items() if k not in RESERVED_KEYS}
    return PatchHeader(version, method, method_config, modules, extra)


def read_patch_header(path: Path | str, where: str | None = None) -> PatchHeader:
    """The validated header of a patch file; `where` names the file in messages (default: its name)."""
    path = Path(path)
    if not path.is_file():
        raise MalformedFile(f"{path}: no such file")
    infos, meta = read_safetensors_header(path)
    return build_header(meta, infos, where or path.name)
