"""Patch files: one safetensors file whose string metadata describes the deltas.

Metadata keys: `format_version`, `method`, `method_config` (JSON object), `modules` (JSON object
module -> {"kind": ..., "scale": ... for lowrank}); any other key is free-form `Patch.metadata`.
Tensors are named `<module>.<name>` with names A/B (lowrank), idx/values (columns, rows), s (scale)
and delta (dense). Loading validates everything, because a patch comes from users and workers and a
bad one must fail here with a clear message, not later as a shape error deep inside a model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer.errors import PatchFormatError
from trainer.patch._atomic import atomic_write_bytes
from trainer.patch.types import DELTA_KINDS, FORMAT_VERSION, Columns, Dense, LowRank, Patch, Rows, Scale

SUPPORTED_FORMAT_VERSIONS = frozenset({FORMAT_VERSION})
RESERVED_KEYS = ("format_version", "method", "method_config", "modules")
TENSOR_NAMES: dict[str, tuple[str, ...]] = {
    "lowrank": ("A", "B"),
    "columns": ("idx", "values"),
    "rows": ("idx", "values"),
    "scale": ("s",),
    "dense": ("delta",),
}
FLOAT_DTYPES = frozenset({"float32", "bfloat16", "float16"})
# safetensors' on-disk dtype codes, named as torch names them so messages read the same either way.
_ST_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}  # fmt: skip


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str  # torch's name without the "torch." prefix


@dataclass(frozen=True)
class ModuleSummary:
    kind: str
    tensors: dict[str, TensorInfo]
    scale: float | None = None

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
        return sum(math.prod(t.shape) for name, t in self.tensors.items() if name != "idx")


@dataclass(frozen=True)
class PatchSummary:
    """What `patch inspect` shows; built from the header alone, without reading tensor data."""

    format_version: int
    method: str
    method_config: dict[str, Any]
    modules: dict[str, ModuleSummary]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def num_params(self) -> int:
        return sum(m.num_params for m in self.modules.values())

    @property
    def export_rank(self) -> int | None:
        from trainer.patch.peft_export import lora_export_rank

        return lora_export_rank((m.kind, m.rank) for m in self.modules.values())


@dataclass(frozen=True)
class _Header:
    format_version: int
    method: str
    method_config: dict[str, Any]
    modules: dict[str, dict[str, Any]]
    extra: dict[str, str]


def _err(where: str, message: str, module: str | None = None) -> PatchFormatError:
    prefix = f"{where}: module '{module}': " if module is not None else f"{where}: "
    return PatchFormatError(prefix + message)


def _parse_header(meta: dict[str, str] | None, where: str) -> _Header:
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
    method_config = _json_object(meta.get("method_config", "{}"), "method_config", where)
    modules = _json_object(meta.get("modules"), "modules", where)
    if not modules:
        raise _err(where, "patch has no modules")
    for module, entry in modules.items():
        _check_module_entry(module, entry, where)
    extra = {k: v for k, v in meta.items() if k not in RESERVED_KEYS}
    return _Header(version, method, method_config, modules, extra)


def _json_object(text: str | None, key: str, where: str) -> dict[str, Any]:
    if text is None:
        raise _err(where, f"missing {key} in metadata")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _err(where, f"{key} metadata is not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise _err(where, f"{key} metadata must be a JSON object, found {type(value).__name__}")
    return value


def _check_module_entry(module: str, entry: Any, where: str) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
        raise _err(where, 'entry in modules metadata must be {"kind": ...}', module)
    kind = entry["kind"]
    if kind not in DELTA_KINDS:
        raise _err(where, f"unknown kind {kind!r} (known: {', '.join(DELTA_KINDS)})", module)
    if kind == "lowrank":
        scale = entry.get("scale")
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
            raise _err(where, f"lowrank scale must be a finite number, found {scale!r}", module)


def _check_structure(header: _Header, infos: dict[str, TensorInfo], where: str) -> None:
    """Names, ranks of tensors, dtypes and shapes: everything that needs no tensor data."""
    expected = {f"{m}.{n}" for m, e in header.modules.items() for n in TENSOR_NAMES[e["kind"]]}
    unexpected = sorted(set(infos) - expected)
    if unexpected:
        raise _err(where, f"unexpected tensor {unexpected[0]!r} (not listed in modules metadata)")
    for module, entry in sorted(header.modules.items()):
        kind = entry["kind"]
        missing = [n for n in TENSOR_NAMES[kind] if f"{module}.{n}" not in infos]
        if missing:
            raise _err(where, f"{kind} delta is missing tensor {module}.{missing[0]}", module)
        _check_shapes(kind, {n: infos[f"{module}.{n}"] for n in TENSOR_NAMES[kind]}, module, where)


def _check_shapes(kind: str, t: dict[str, TensorInfo], module: str, where: str) -> None:
    def need(name: str, ndim: int, dtypes: frozenset[str] | None = None) -> tuple[int, ...]:
        info = t[name]
        if dtypes is not None and info.dtype not in dtypes:
            raise _err(where, f"{name} must be {' or '.join(sorted(dtypes))}, found {info.dtype}", module)
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
        (k,) = need("idx", 1, frozenset({"int64"}))
        values = need("values", 2, FLOAT_DTYPES)
        axis = 1 if kind == "columns" else 0
        if values[axis] != k:
            layout = "[out, k]" if kind == "columns" else "[k, in]"
            raise _err(where, f"idx has {k} entries but values is {list(values)} (expected {layout})", module)
    elif kind == "scale":
        need("s", 1, frozenset({"float32"}))
    else:
        need("delta", 2, FLOAT_DTYPES)


def _check_values(header: _Header, tensors: dict[str, torch.Tensor], where: str) -> None:
    """The checks that need tensor data: finiteness and index sanity."""
    for module, entry in sorted(header.modules.items()):
        for name in TENSOR_NAMES[entry["kind"]]:
            tensor = tensors[f"{module}.{name}"]
            if name == "idx":
                if bool((tensor < 0).any()):
                    raise _err(where, f"idx has a negative entry ({int(tensor.min())})", module)
                if torch.unique(tensor).numel() != tensor.numel():
                    raise _err(where, "idx has duplicate entries", module)
            elif not bool(torch.isfinite(tensor).all()):
                raise _err(where, f"{name} contains NaN or Inf", module)


def _info(tensor: torch.Tensor) -> TensorInfo:
    return TensorInfo(tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."))


def _open(path: Path):  # -> safetensors.safe_open handle
    from safetensors import safe_open

    if not path.is_file():
        raise PatchFormatError(f"{path}: no such file")
    try:
        return safe_open(str(path), framework="pt")
    except Exception as exc:  # safetensors raises its own error type for every kind of bad header
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PatchFormatError(f"{path}: not a valid safetensors file ({reason})") from None


# --- public API ------------------------------------------------------------------------------------


def save_patch(patch: Patch, path: Path | str) -> Path:
    """Write `patch` atomically; it is validated with the same rules as `load_patch` first."""
    from safetensors.torch import save

    path = Path(path)
    clash = sorted(set(patch.metadata) & set(RESERVED_KEYS))
    if clash:
        raise PatchFormatError(f"{path}: metadata key {clash[0]!r} is reserved")
    modules: dict[str, dict[str, Any]] = {}
    tensors: dict[str, torch.Tensor] = {}
    for module, delta in sorted(patch.deltas.items()):
        entry: dict[str, Any] = {"kind": delta.kind}
        if isinstance(delta, LowRank):
            entry["scale"] = float(delta.scale)
        modules[module] = entry
        for name in TENSOR_NAMES[delta.kind]:
            tensor = getattr(delta, name).detach()
            if name == "idx":
                tensor = tensor.to(torch.int64)  # lossless; the file format fixes one index dtype
            elif name == "s":
                tensor = tensor.to(torch.float32)
            tensors[f"{module}.{name}"] = tensor.to("cpu", copy=True).contiguous()
    try:
        config_json = json.dumps(patch.method_config, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PatchFormatError(f"{path}: method_config is not JSON-serializable ({exc})") from None
    metadata = {
        **patch.metadata,
        "format_version": str(patch.format_version),
        "method": patch.method,
        "method_config": config_json,
        "modules": json.dumps(modules, sort_keys=True),
    }
    header = _parse_header(metadata, str(path))
    _check_structure(header, {k: _info(t) for k, t in tensors.items()}, str(path))
    _check_values(header, tensors, str(path))
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_patch(path: Path | str) -> Patch:
    """Read and fully validate a patch file; any defect raises PatchFormatError naming the module."""
    path = Path(path)
    where = str(path)
    with _open(path) as fh:
        header = _parse_header(fh.metadata(), where)
        tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    _check_structure(header, {k: _info(t) for k, t in tensors.items()}, where)
    _check_values(header, tensors, where)
    deltas = {}
    for module, entry in header.modules.items():
        t = {name: tensors[f"{module}.{name}"] for name in TENSOR_NAMES[entry["kind"]]}
        kind = entry["kind"]
        if kind == "lowrank":
            deltas[module] = LowRank(A=t["A"], B=t["B"], scale=float(entry["scale"]))
        elif kind == "columns":
            deltas[module] = Columns(idx=t["idx"], values=t["values"])
        elif kind == "rows":
            deltas[module] = Rows(idx=t["idx"], values=t["values"])
        elif kind == "scale":
            deltas[module] = Scale(s=t["s"])
        else:
            deltas[module] = Dense(delta=t["delta"])
    return Patch(
        method=header.method,
        method_config=header.method_config,
        deltas=deltas,
        format_version=header.format_version,
        metadata=header.extra,
    )


def read_patch_summary(path: Path | str) -> PatchSummary:
    """Header-only view of a patch (metadata, names, shapes, dtypes); tensor data is not read."""
    path = Path(path)
    where = str(path)
    with _open(path) as fh:
        header = _parse_header(fh.metadata(), where)
        infos = {}
        for key in fh.keys():  # noqa: SIM118
            sl = fh.get_slice(key)
            dtype = sl.get_dtype()
            infos[key] = TensorInfo(tuple(sl.get_shape()), _ST_DTYPES.get(dtype, dtype.lower()))
    _check_structure(header, infos, where)
    modules = {
        module: ModuleSummary(
            kind=entry["kind"],
            tensors={n: infos[f"{module}.{n}"] for n in TENSOR_NAMES[entry["kind"]]},
            scale=float(entry["scale"]) if entry["kind"] == "lowrank" else None,
        )
        for module, entry in sorted(header.modules.items())
    }
    return PatchSummary(header.format_version, header.method, header.method_config, modules, header.extra)
