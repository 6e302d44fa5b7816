from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from core.errors import InvalidInput, MalformedFile
from core.safetensors_header import read_safetensors_header
from registry.fingerprint import fingerprint_model_dir


def _write_safetensors(path: Path, header: dict, data: bytes = b"", claimed_len: int | None = None) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if claimed_len is None else claimed_len) + raw + data)
    return path


def test_header_of_a_real_checkpoint(tiny_model_dir: Path) -> None:
    tensors, _ = read_safetensors_header(tiny_model_dir / "model.safetensors")
    q = tensors["model.layers.0.self_attn.q_proj.weight"]
    assert (q.dtype, q.shape) == ("F32", (64, 64))
    k = tensors["model.layers.0.self_attn.k_proj.weight"]
    assert k.shape == (32, 64)  # GQA: 2 KV heads of 16


@pytest.mark.parametrize(
    ("header", "data", "claimed", "message"),
    [
        ({}, b"", 10 * 1024**3, "over the 104,857,600-byte limit"),
        ({}, b"", 50_000_000, "truncated"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, None, "beyond the data"),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
            None,
            "overlap",
        ),
        (
            {"w": {"dtype": "F13", "shape": [1], "data_offsets": [0, 2]}},
            b"\0" * 2,
            None,
            "unknown dtype 'F13'",
        ),
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, None, "needs 12"),
        ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, None, "invalid shape"),
        (
            {"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}},
            b"\0" * 4,
            None,
            "invalid data_offsets",
        ),
        ({"__metadata__": {"a": 1}}, b"", None, "__metadata__"),
    ],
)
def test_malformed_headers_are_rejected(
    tmp_path: Path, header: dict, data: bytes, claimed: int | None, message: str
) -> None:
    path = _write_safetensors(tmp_path / "bad.safetensors", header, data, claimed)
    with pytest.raises(MalformedFile, match=message):
        read_safetensors_header(path)


def test_invalid_json_and_tiny_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", 5) + b"{oops")
    with pytest.raises(MalformedFile, match="not valid JSON"):
        read_safetensors_header(bad)
    bad.write_bytes(b"\1\2")
    with pytest.raises(MalformedFile, match="too short"):
        read_safetensors_header(bad)


def test_truncated_checkpoint_is_rejected(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(MalformedFile, match="beyond the data"):
        fingerprint_model_dir(copy)


def test_same_architecture_same_fingerprint_different_weights(make_tiny_model) -> None:
    a, b = fingerprint_model_dir(make_tiny_model(seed=0)), fingerprint_model_dir(make_tiny_model(seed=1))
    assert a.arch_fingerprint == b.arch_fingerprint
    assert a.tokenizer_fingerprint == b.tokenizer_fingerprint
    assert a.config_digest == b.config_digest
    assert a.weights_digest != b.weights_digest
    assert a.num_parameters == sum(t.numel for t in a.tensors.values())


def test_shape_change_changes_the_architecture(make_tiny_model) -> None:
    a = fingerprint_model_dir(make_tiny_model())
    wide = fingerprint_model_dir(make_tiny_model(hidden_size=96))
    assert a.arch_fingerprint != wide.arch_fingerprint
    assert ["model.embed_tokens.weight", [512, 96], "F32"] in wide.tensor_table()


def test_vocabulary_change_changes_the_tokenizer_fingerprint(make_tiny_model) -> None:
    a = fingerprint_model_dir(make_tiny_model())
    b = fingerprint_model_dir(make_tiny_model(vocab_size=640))
    assert a.tokenizer_fingerprint != b.tokenizer_fingerprint


def test_tokenizer_fingerprint_ignores_incidental_settings(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    cfg = json.loads((copy / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 12345
    cfg["padding_side"] = "left"
    (copy / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert (
        fingerprint_model_dir(copy).tokenizer_fingerprint
        == fingerprint_model_dir(tiny_model_dir).tokenizer_fingerprint
    )


def test_sharded_checkpoint_matches_the_single_file_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, sharded / name)
    state = load_file(tiny_model_dir / "model.safetensors")
    names = sorted(state)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for file, keys in halves.items():
        save_file({k: state[k] for k in keys}, sharded / file)
        weight_map.update(dict.fromkeys(keys, file))
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert (
        fingerprint_model_dir(sharded).arch_fingerprint
        == fingerprint_model_dir(tiny_model_dir).arch_fingerprint
    )


def test_directory_without_config_or_weights(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(InvalidInput, match=r"no config\.json"):
        fingerprint_model_dir(tmp_path)
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(InvalidInput, match="no safetensors weights"):
        fingerprint_model_dir(tmp_path)


def test_progress_follows_the_weight_hashing(tiny_model_dir: Path) -> None:
    calls: list[tuple[int, int]] = []
    fingerprint_model_dir(tiny_model_dir, on_progress=lambda done, total: calls.append((done, total)))
    size = (tiny_model_dir / "model.safetensors").stat().st_size
    assert calls and calls[-1] == (size, size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
