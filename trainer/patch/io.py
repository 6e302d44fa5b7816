"""Patch files, read and written with tensors (the format itself is `core.patchfile`).

Loading validates everything, because a patch comes from users and workers and a bad one must fail
here with a clear message, not later as a shape error deep inside a model: the header and tensor
table through `core.patchfile.build_header`, then what only the data can show (finite values,
index sanity).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from core.atomic import atomic_write_bytes
from core.errors import MalformedFile
from core.patchfile import RESERVED_KEYS, TENSOR_NAMES, PatchHeader, build_header
from core.safetensors_header import DTYPE_CODES, TensorInfo, header_bytes, storage_order
from trainer.patch.types import Columns, Delta, Dense, LowRank, Patch, Rows, Scale


def _err(where: str, message: str, module: str) -> MalformedFile:
    return MalformedFile(f"{where}: module '{module}': {message}")


def _check_values(header: PatchHeader, tensors: dict[str, torch.Tensor], where: str) -> None:
    """The checks that need tensor data: finiteness and index sanity."""
    for module, spec in header.modules.items():
        for name in TENSOR_NAMES[spec.kind]:
            tensor = tensors[f"{module}.{name}"]
            if name == "idx":
                if bool((tensor < 0).any()):
                    raise _err(where, f"idx has a negative entry ({int(tensor.min())})", module)
                if torch.unique(tensor).numel() != tensor.numel():
                    raise _err(where, "idx has duplicate entries", module)
            elif not bool(torch.isfinite(tensor).all()):
                raise _err(where, f"{name} contains NaN or Inf", module)


def tensor_info(name: str, tensor: torch.Tensor) -> TensorInfo:
    dtype = str(tensor.dtype).removeprefix("torch.")
    return TensorInfo(name, DTYPE_CODES.get(dtype, dtype), tuple(tensor.shape))


def _infos(tensors: dict[str, torch.Tensor]) -> dict[str, TensorInfo]:
    return {key: tensor_info(key, t) for key, t in tensors.items()}


def _open(path: Path) -> Any:  # a safetensors.safe_open handle
    from safetensors import safe_open

    if not path.is_file():
        raise MalformedFile(f"{path}: no such file")
    try:
        return safe_open(str(path), framework="pt")
    except Exception as exc:  # safetensors raises its own error type for every kind of bad header
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MalformedFile(f"{path}: not a valid safetensors file ({reason})") from None


def _tensors_of(delta: Delta) -> dict[str, torch.Tensor]:
    """The file's tensors for one delta, in the dtypes the format fixes (idx int64, s float32)."""
    out = {}
    for name in TENSOR_NAMES[delta.kind]:
        tensor = getattr(delta, name).detach()
        if name == "idx":
            tensor = tensor.to(torch.int64)  # lossless; the file format fixes one index dtype
        elif name == "s":
            tensor = tensor.to(torch.float32)
        out[name] = tensor.to("cpu", copy=True).contiguous()
    return out


def _metadata(patch: Patch, where: str) -> dict[str, str]:
    """The file's string metadata for `patch`."""
    clash = sorted(set(patch.metadata) & set(RESERVED_KEYS))
    if clash:
        raise MalformedFile(f"{where}: metadata key {clash[0]!r} is reserved")
    modules: dict[str, dict[str, Any]] = {}
    for module, delta in sorted(patch.deltas.items()):
        entry: dict[str, Any] = {"kind": delta.kind}
        if isinstance(delta, LowRank):
            entry["scale"] = float(delta.scale)
        modules[module] = entry
    try:
        config_json = json.dumps(patch.method_config, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise MalformedFile(f"{where}: method_config is not JSON-serializable ({exc})") from None
    return {
        **patch.metadata,
        "format_version": str(patch.format_version),
        "method": patch.method,
        "method_config": config_json,
        "modules": json.dumps(modules, sort_keys=True),
    }


def describe(patch: Patch, where: str = "patch") -> PatchHeader:
    """The header `patch` would have as a file (ranks, shapes, export rank), without writing it."""
    infos = {}
    for module, delta in patch.deltas.items():
        for name in TENSOR_NAMES[delta.kind]:
            tensor = getattr(delta, name)
            dtype = "I64" if name == "idx" else "F32" if name == "s" else None
            info = tensor_info(f"{module}.{name}", tensor)
            infos[info.name] = TensorInfo(info.name, dtype or info.dtype, info.shape)
    return build_header(_metadata(patch, where), infos, where)


def _file_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A safetensors file with a canonical header (sorted metadata, tensors in `storage_order`):
    the same patch always gives the same bytes, so its digest dedupes (safetensors' own writer
    orders metadata by a per-process hash)."""
    infos = storage_order(list(_infos(tensors).values()))
    parts = [header_bytes(infos, metadata)]
    for info in infos:
        tensor = tensors[info.name].contiguous().reshape(-1)
        parts.append(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return b"".join(parts)


def save_patch(patch: Patch, path: Path | str) -> Path:
    """Write `patch` atomically; it is validated with the same rules as `load_patch` first."""
    path = Path(path)
    metadata = _metadata(patch, str(path))
    tensors: dict[str, torch.Tensor] = {}
    for module, delta in sorted(patch.deltas.items()):
        tensors.update({f"{module}.{name}": t for name, t in _tensors_of(delta).items()})
    header = build_header(metadata, _infos(tensors), str(path))
    _check_values(header, tensors, str(path))
    return atomic_write_bytes(path, _file_bytes(tensors, metadata))


def _delta(spec_kind: str, t: dict[str, torch.Tensor], scale: float | None) -> Delta:
    if spec_kind == "lowrank":
        assert scale is not None
        return LowRank(A=t["A"], B=t["B"], scale=scale)
    if spec_kind == "columns":
        return Columns(idx=t["idx"], values=t["values"])
    if spec_kind == "rows":
        return Rows(idx=t["idx"], values=t["values"])
    if spec_kind == "scale":
        return Scale(s=t["s"])
    return Dense(delta=t["delta"])


def load_patch(path: Path | str) -> Patch:
    """Read and fully validate a patch file; any defect raises MalformedFile naming the module."""
    path = Path(path)
    where = str(path)
    with _open(path) as fh:
        meta = fh.metadata()
        tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    header = build_header(meta, _infos(tensors), where)
    _check_values(header, tensors, where)
    deltas = {
        module: _delta(spec.kind, {n: tensors[f"{module}.{n}"] for n in TENSOR_NAMES[spec.kind]}, spec.scale)
        for module, spec in header.modules.items()
    }
    return Patch(
        method=header.method,
        method_config=header.method_config,
        deltas=deltas,
        format_version=header.format_version,
        metadata=header.metadata,
    )
