"""A strict reader of safetensors headers: the tensor table without loading a single tensor.

Format: 8-byte little-endian header length N, N bytes of JSON, then the data buffer. Every way a
file can lie about itself is rejected with a message that names the file.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

from core import inputs
from core.errors import MalformedFile

MAX_HEADER_BYTES = 100 * 1024 * 1024

DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
# The same dtypes as torch names them (without "torch."), so messages read the same on both sides.
DTYPE_NAMES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool", "U16": "uint16",
    "U32": "uint32", "U64": "uint64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
}  # fmt: skip
DTYPE_CODES = {name: code for code, name in DTYPE_NAMES.items()}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int = field(default=-1, compare=False)  # where its bytes start in the file (-1: unknown)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def dtype_name(self) -> str:
        """The dtype as torch names it, e.g. `float32` for `F32`."""
        return DTYPE_NAMES.get(self.dtype, self.dtype.lower())


def read_safetensors_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Return (tensors by name, the `__metadata__` strings), validating the whole header."""
    path = Path(path)
    size = path.stat().st_size
    if size < 8:
        raise MalformedFile(f"{path.name}: not a safetensors file ({size} bytes, too short for a header)")
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > MAX_HEADER_BYTES:
            raise MalformedFile(
                f"{path.name}: header claims {header_len:,} bytes, over the {MAX_HEADER_BYTES:,}-byte limit"
            )
        if 8 + header_len > size:
            raise MalformedFile(
                f"{path.name}: header claims {header_len:,} bytes but the file has only {size:,} (truncated?)"
            )
        raw = f.read(header_len)
    header = inputs.loads(raw, f"{path.name}: header", MalformedFile)
    if not isinstance(header, dict):
        raise MalformedFile(f"{path.name}: header is not a JSON object")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise MalformedFile(f"{path.name}: __metadata__ must map strings to strings")

    data_len = size - 8 - header_len
    tensors: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        info, begin, end = _parse_entry(path.name, name, entry, 8 + header_len)
        if end > data_len:
            raise MalformedFile(
                f"{path.name}: tensor {name!r} ends at byte {end:,} beyond the data ({data_len:,} bytes)"
            )
        tensors[name] = info
        spans.append((begin, end, name))
    spans.sort()
    for (_, prev_end, prev), (begin, _, cur) in itertools.pairwise(spans):
        if begin < prev_end:
            raise MalformedFile(f"{path.name}: tensors {prev!r} and {cur!r} overlap")
    return tensors, metadata


def _parse_entry(file: str, name: str, entry: object, data_start: int) -> tuple[TensorInfo, int, int]:
    if not isinstance(entry, dict):
        raise MalformedFile(f"{file}: entry for tensor {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise MalformedFile(f"{file}: tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise MalformedFile(f"{file}: tensor {name!r} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise MalformedFile(f"{file}: tensor {name!r} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    info = TensorInfo(name, dtype, tuple(shape), data_start + begin)
    if end - begin != info.numel * DTYPE_BYTES[dtype]:
        raise MalformedFile(
            f"{file}: tensor {name!r} spans {end - begin} bytes but {dtype}{list(shape)} needs "
            f"{info.numel * DTYPE_BYTES[dtype]}"
        )
    return info, begin, end


def header_bytes(tensors: list[TensorInfo], metadata: dict[str, str] | None = None) -> bytes:
    """The 8-byte length and JSON header of a safetensors file whose data holds `tensors` back to
    back in this order, padded to 8 bytes: a writer can then stream the data tensor by tensor.
    Metadata keys are sorted, so equal inputs give equal bytes (content addressing dedupes them)."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))  # canonical: same patch, same bytes
    offset = 0
    for info in tensors:
        size = info.numel * DTYPE_BYTES[info.dtype]
        header[info.name] = {
            "dtype": info.dtype,
            "shape": list(info.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def storage_order(tensors: list[TensorInfo]) -> list[TensorInfo]:
    """The order safetensors itself writes: widest dtype first, then by name, so every tensor
    starts aligned to its element size (the header is padded to 8), deterministically."""
    return sorted(tensors, key=lambda t: (-DTYPE_BYTES[t.dtype], t.name))
