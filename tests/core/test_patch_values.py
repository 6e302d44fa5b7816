"""core.patch_values: the data checks the registry runs without torch (finite floats, usable
indices), streamed in chunks, for every float dtype a patch may hold."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from core import patch_values
from core.errors import MalformedFile
from core.patch_values import check_values
from core.patchfile import read_patch_header
from tests.factories import raw_patch

Q = "model.layers.0.self_attn.q_proj"
O = "model.layers.0.self_attn.o_proj"  # noqa: E741

NON_FINITE = {
    "F32": [struct.pack("<f", x) for x in (float("nan"), float("inf"), float("-inf"))]
    + [struct.pack("<I", 0x7FC00001), struct.pack("<I", 0xFF800000)],
    "F16": [struct.pack("<e", x) for x in (float("nan"), float("inf"), float("-inf"))]
    + [struct.pack("<H", 0x7E01)],
    "BF16": [struct.pack("<H", b) for b in (0x7FC0, 0x7F80, 0xFF80, 0x7F81)],
}
FINITE = {
    "F32": [struct.pack("<f", x) for x in (0.0, -0.0, 3.4e38, -3.4e38, 1e-45)],
    "F16": [struct.pack("<e", x) for x in (0.0, 65504.0, -65504.0, 6e-8)],
    "BF16": [struct.pack("<H", b) for b in (0x0000, 0x7F7F, 0xFF7F, 0x0001)],
}


def _lowrank(tmp_path: Path, dtype: str, b_values: list[bytes], rows: int = 2) -> Path:
    size = {"F32": 4, "F16": 2, "BF16": 2}[dtype]
    out = len(b_values) // rows if len(b_values) >= rows else 1
    b_data = b"".join(b_values).ljust(out * rows * size, b"\0")
    return raw_patch(
        tmp_path / f"{dtype}.safetensors",
        {Q: {"kind": "lowrank", "scale": 1.0}},
        {f"{Q}.A": (dtype, (rows, 4), bytes(rows * 4 * size)), f"{Q}.B": (dtype, (out, rows), b_data)},
    )


@pytest.mark.parametrize("dtype", list(NON_FINITE))
def test_every_non_finite_value_is_found(tmp_path: Path, dtype: str) -> None:
    for bad in NON_FINITE[dtype]:
        values = [*FINITE[dtype], bad, FINITE[dtype][0]]
        values += [FINITE[dtype][0]] * (len(values) % 2)
        path = _lowrank(tmp_path, dtype, values)
        with pytest.raises(MalformedFile, match=f"module '{Q}': B contains NaN or Inf"):
            check_values(path, read_patch_header(path))


@pytest.mark.parametrize("dtype", list(FINITE))
def test_finite_extremes_pass(tmp_path: Path, dtype: str) -> None:
    values = FINITE[dtype] + [FINITE[dtype][0]] * (len(FINITE[dtype]) % 2)
    path = _lowrank(tmp_path, dtype, values)
    assert check_values(path, read_patch_header(path)).max_index == {}


def test_a_nan_past_the_first_chunk_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patch_values, "CHUNK", 64)
    values = np.zeros(1000, dtype="<f4")
    values[999] = np.inf
    path = raw_patch(
        tmp_path / "p.safetensors", {O: {"kind": "scale"}}, {f"{O}.s": ("F32", (1000,), values.tobytes())}
    )
    with pytest.raises(MalformedFile, match="s contains NaN or Inf"):
        check_values(path, read_patch_header(path))


@pytest.mark.parametrize(
    ("idx", "message"),
    [([3, -1], r"idx has a negative entry \(-1\)"), ([3, 3], "idx has duplicate entries")],
)
def test_indices_are_checked(tmp_path: Path, idx: list[int], message: str) -> None:
    path = raw_patch(
        tmp_path / "p.safetensors",
        {O: {"kind": "columns"}},
        {
            f"{O}.idx": ("I64", (2,), np.array(idx, dtype="<i8").tobytes()),
            f"{O}.values": ("F32", (4, 2), bytes(32)),
        },
    )
    with pytest.raises(MalformedFile, match=message):
        check_values(path, read_patch_header(path))


def test_max_index_is_reported(tmp_path: Path) -> None:
    path = raw_patch(
        tmp_path / "p.safetensors",
        {O: {"kind": "columns"}},
        {
            f"{O}.idx": ("I64", (2,), np.array([7, 2], dtype="<i8").tobytes()),
            f"{O}.values": ("F32", (4, 2), bytes(32)),
        },
    )
    assert check_values(path, read_patch_header(path)).max_index == {O: 7}
