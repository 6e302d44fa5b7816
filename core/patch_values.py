"""The checks of a patch file that need its tensor data, streamed without torch.

The header (`core.patchfile`) says what a file claims; only the data shows whether every value is
finite and every index is usable. The registry runs this before it stores a patch, so a patch with
NaN or Inf is never registered (and never served by `resolve`), and the trainer's `load_patch`
keeps the same rules for files it reads. Floats are checked by their exponent bits in fixed-size
chunks, so a file of any size is read once with bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from core.errors import MalformedFile
from core.patchfile import TENSOR_NAMES, PatchHeader
from core.safetensors_header import DTYPE_BYTES, TensorInfo

CHUNK = 1 << 20
# A float is NaN or ±Inf exactly when all of its exponent bits are set: (unsigned view, mask).
_EXPONENT: dict[str, tuple[type[np.unsignedinteger], int]] = {
    "F64": (np.uint64, 0x7FF0_0000_0000_0000),
    "F32": (np.uint32, 0x7F80_0000),
    "F16": (np.uint16, 0x7C00),
    "BF16": (np.uint16, 0x7F80),
}


@dataclass(frozen=True)
class ValueSummary:
    """What the data showed: the largest index of each columns/rows module (for fit checks)."""

    max_index: dict[str, int]


def _err(where: str, module: str, message: str) -> MalformedFile:
    return MalformedFile(f"{where}: module '{module}': {message}")


def _read(f: BinaryIO, info: TensorInfo, where: str) -> bytes:
    f.seek(info.offset)
    data = f.read(info.numel * DTYPE_BYTES[info.dtype])
    if len(data) != info.numel * DTYPE_BYTES[info.dtype]:
        raise MalformedFile(f"{where}: tensor {info.name!r} is cut short")
    return data


def _all_finite(f: BinaryIO, info: TensorInfo, where: str) -> bool:
    unsigned, mask = _EXPONENT[info.dtype]
    itemsize = DTYPE_BYTES[info.dtype]
    left = info.numel * itemsize
    step = CHUNK - CHUNK % itemsize
    f.seek(info.offset)
    while left > 0:
        chunk = f.read(min(step, left))
        if not chunk:
            raise MalformedFile(f"{where}: tensor {info.name!r} is cut short")
        left -= len(chunk)
        bits = np.frombuffer(chunk, dtype=np.dtype(unsigned).newbyteorder("<"))
        if bool(np.any((bits & unsigned(mask)) == unsigned(mask))):
            return False
    return True


def _index_max(f: BinaryIO, info: TensorInfo, module: str, where: str) -> int:
    idx = np.frombuffer(_read(f, info, where), dtype="<i8")
    if idx.size and int(idx.min()) < 0:
        raise _err(where, module, f"idx has a negative entry ({int(idx.min())})")
    if np.unique(idx).size != idx.size:
        raise _err(where, module, "idx has duplicate entries")
    return int(idx.max()) if idx.size else -1


def check_values(path: Path, header: PatchHeader, where: str | None = None) -> ValueSummary:
    """Read every tensor of a patch whose header is valid: floats finite, indices non-negative and
    unique. Raises MalformedFile naming the module; returns the largest index per module."""
    where = where or Path(path).name
    max_index: dict[str, int] = {}
    with open(path, "rb") as f:
        for module, spec in sorted(header.modules.items()):
            for name in TENSOR_NAMES[spec.kind]:
                info = spec.tensors[name]
                if name == "idx":
                    max_index[module] = _index_max(f, info, module, where)
                elif info.dtype in _EXPONENT and not _all_finite(f, info, where):
                    raise _err(where, module, f"{name} contains NaN or Inf")
    return ValueSummary(max_index)
