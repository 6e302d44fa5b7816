"""core.safetensors_header: any file either reads as a tensor table or is refused with MalformedFile
naming the file (never RecursionError, ValueError, OverflowError, ...)."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import MalformedFile
from core.safetensors_header import DTYPE_BYTES, TensorInfo, header_bytes, read_safetensors_header
from tests.properties import bounded, deep, dumps, json_values


def st_file(header: str | bytes, data: bytes = b"") -> bytes:
    raw = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(raw)) + raw + data


def _read(content: bytes) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.safetensors"
        path.write_bytes(content)
        return read_safetensors_header(path)


def _refused_or_read(content: bytes) -> None:
    try:
        tensors, metadata = _read(content)
    except MalformedFile as exc:
        assert exc.message.startswith("x.safetensors: ") and "\n" not in exc.message
    else:
        assert all(isinstance(v, str) and "\x00" not in v for v in metadata.values())
        assert all(isinstance(t, TensorInfo) for t in tensors.values())


@bounded()
@given(st.binary(max_size=300))
def test_arbitrary_bytes(content: bytes) -> None:
    _refused_or_read(content)


@bounded()
@given(json_values, st.binary(max_size=64))
def test_arbitrary_json_headers(header: Any, data: bytes) -> None:
    _refused_or_read(st_file(dumps(header), data))


entry = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from([*DTYPE_BYTES, "F128", ""]),
        "shape": st.lists(st.integers(min_value=-2, max_value=10**25), max_size=4) | json_values,
        "data_offsets": st.lists(st.integers(min_value=-1, max_value=10**25), max_size=3) | json_values,
    }
)


@bounded()
@given(st.dictionaries(st.text(max_size=6), entry, max_size=4), st.binary(max_size=64))
def test_structured_tensor_tables(table: dict[str, Any], data: bytes) -> None:
    _refused_or_read(st_file(dumps(table), data))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (deep(100_000), "header: JSON nested more than 32 levels deep"),
        ('{"t": {"dtype": "F32", "shape": [' + "9" * 5000 + '], "data_offsets": [0, 4]}}', "5,000 digits"),
        ('{"__metadata__": {"a": "x\\u0000"}}', "header: a string holds a NUL character"),
        ('{"t": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 4]}}', "NaN is not a number"),
        ('{"__metadata__": {"a": 1}}', "__metadata__ must map strings to strings"),
    ],
)
def test_hostile_headers_are_malformed_files(header: str, message: str) -> None:
    with pytest.raises(MalformedFile, match=message):
        _read(st_file(header, bytes(8)))


def test_header_bytes_are_canonical() -> None:
    infos = [TensorInfo("b", "F32", (1,)), TensorInfo("a", "F32", (1,))]
    assert header_bytes(infos, {"z": "1", "a": "2"}) == header_bytes(infos, {"a": "2", "z": "1"})
    tensors, metadata = _read(header_bytes(infos, {"z": "1", "a": "2"}) + bytes(8))
    assert list(metadata) == ["a", "z"] and tensors["b"].offset < tensors["a"].offset
