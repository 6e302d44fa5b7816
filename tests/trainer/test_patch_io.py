"""Patch files: save/load round trips, header-only summaries, and rejection of malformed files."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from core.errors import MalformedFile
from core.patchfile import read_patch_header
from trainer.patch.io import load_patch, save_patch
from trainer.patch.types import Columns, LowRank, Patch, Rows, Scale

O_PROJ = "model.layers.0.self_attn.o_proj"
ALL_KINDS = {
    "model.layers.0.self_attn.q_proj": "lowrank",
    "model.layers.0.self_attn.o_proj": "columns",
    "model.layers.0.self_attn.v_proj": "rows",
    "model.layers.1.self_attn.k_proj": "scale",
    "model.layers.1.mlp.down_proj": "dense",
}


def _same_patch(a: Patch, b: Patch) -> None:
    assert (a.method, a.method_config, a.format_version, a.metadata) == (
        b.method,
        b.method_config,
        b.format_version,
        b.metadata,
    )
    assert a.modules == b.modules
    for name in a.modules:
        da, db = a.deltas[name], b.deltas[name]
        assert type(da) is type(db)
        for field in vars(da):
            va, vb = getattr(da, field), getattr(db, field)
            if isinstance(va, torch.Tensor):
                assert va.dtype == vb.dtype and torch.equal(va, vb), (name, field)
            else:
                assert va == vb


@pytest.mark.parametrize("kind", ["lowrank", "columns", "rows", "scale", "dense"])
def test_round_trip_each_kind(tmp_path, tiny_model, random_patch, kind):
    name = next(n for n, k in ALL_KINDS.items() if k == kind)
    patch = random_patch(tiny_model, {name: kind}, seed=3)
    patch.metadata = {"note": "hello"}
    path = save_patch(patch, tmp_path / "p.safetensors")
    _same_patch(patch, load_patch(path))
    assert [p.name for p in tmp_path.iterdir()] == ["p.safetensors"]  # no temp file left behind


def test_round_trip_mixed_kinds_and_bf16_values(tmp_path, tiny_model, random_patch):
    patch = random_patch(tiny_model, ALL_KINDS, seed=5)
    patch.deltas[O_PROJ].values = patch.deltas[O_PROJ].values.bfloat16()
    loaded = load_patch(save_patch(patch, tmp_path / "p.safetensors"))
    _same_patch(patch, loaded)
    assert loaded.deltas[O_PROJ].values.dtype == torch.bfloat16
    assert loaded.num_params == patch.num_params


def test_lowrank_scale_round_trips_exactly(tmp_path):
    patch = Patch("lora", {}, {O_PROJ: LowRank(A=torch.ones(2, 4), B=torch.ones(4, 2), scale=0.1 + 0.2)})
    assert load_patch(save_patch(patch, tmp_path / "p.safetensors")).deltas[O_PROJ].scale == 0.1 + 0.2


def test_summary_reads_shapes_and_ranks(tmp_path, tiny_model, random_patch):
    patch = random_patch(tiny_model, ALL_KINDS, seed=1, ranks={O_PROJ: 6})
    summary = read_patch_header(save_patch(patch, tmp_path / "p.safetensors"))
    assert summary.method == "test" and summary.method_config == {"seed": 1} and summary.format_version == 2
    assert {n: m.kind for n, m in summary.modules.items()} == ALL_KINDS
    assert summary.modules[O_PROJ].rank == 6
    assert summary.modules[O_PROJ].tensors["values"].shape == (64, 6)
    assert summary.modules["model.layers.0.self_attn.q_proj"].scale == 2.0
    assert summary.modules["model.layers.1.mlp.down_proj"].rank is None
    assert summary.num_params == patch.num_params
    assert summary.export_rank is None  # dense present: no LoRA export


def test_save_refuses_reserved_metadata_key(tmp_path):
    patch = Patch("x", {}, {O_PROJ: Scale(s=torch.ones(4))}, metadata={"method": "other"})
    with pytest.raises(MalformedFile, match="reserved"):
        save_patch(patch, tmp_path / "p.safetensors")


def test_save_refuses_nan_and_writes_nothing(tmp_path):
    patch = Patch("x", {}, {O_PROJ: Scale(s=torch.tensor([1.0, math.nan]))})
    with pytest.raises(MalformedFile, match=f"module '{O_PROJ}'.*NaN"):
        save_patch(patch, tmp_path / "p.safetensors")
    assert list(tmp_path.iterdir()) == []


# --- malformed files, written directly with safetensors ---------------------------------------------


def _meta(module_map: dict, **overrides: str | None) -> dict[str, str]:
    meta = {"format_version": "1", "method": "m", "method_config": "{}", "modules": json.dumps(module_map)}
    meta.update(overrides)
    return {k: v for k, v in meta.items() if v is not None}


def _cols(k: int = 2, out: int = 4) -> dict[str, torch.Tensor]:
    return {f"{O_PROJ}.idx": torch.arange(k, dtype=torch.int64), f"{O_PROJ}.values": torch.ones(out, k)}


COLS = {O_PROJ: {"kind": "columns"}}
LOW = {O_PROJ: {"kind": "lowrank", "scale": 1.0}}
SCALE = {O_PROJ: {"kind": "scale"}}

MALFORMED = {
    "no format_version": (_cols(), _meta(COLS, format_version=None), "missing format_version"),
    "bad format_version": (_cols(), _meta(COLS, format_version="two"), "not an integer"),
    "future format_version": (_cols(), _meta(COLS, format_version="99"), "unsupported format_version 99"),
    "no method": (_cols(), _meta(COLS, method=None), "missing method"),
    "config not json": (
        _cols(),
        _meta(COLS, method_config="{oops"),
        "method_config metadata: not valid JSON",
    ),
    "modules not object": (_cols(), _meta(COLS, modules="[1]"), "modules metadata must be a JSON object"),
    "no modules": ({}, _meta({}), "no modules"),
    "unknown kind": (_cols(), _meta({O_PROJ: {"kind": "sparse"}}), f"'{O_PROJ}': unknown kind 'sparse'"),
    "lowrank no scale": (
        {f"{O_PROJ}.A": torch.ones(2, 4), f"{O_PROJ}.B": torch.ones(4, 2)},
        _meta({O_PROJ: {"kind": "lowrank"}}),
        "lowrank scale must be a finite number",
    ),
    "missing tensor": (
        {f"{O_PROJ}.A": torch.ones(2, 4)},
        _meta(LOW),
        f"'{O_PROJ}': lowrank delta is missing tensor {O_PROJ}.B",
    ),
    "unexpected tensor": ({**_cols(), "stray.A": torch.ones(1)}, _meta(COLS), "unexpected tensor 'stray.A'"),
    "idx int32": (
        {**_cols(), f"{O_PROJ}.idx": torch.arange(2, dtype=torch.int32)},
        _meta(COLS),
        f"'{O_PROJ}': idx must be int64, found int32",
    ),
    "idx 2-D": (
        {**_cols(), f"{O_PROJ}.idx": torch.zeros(2, 1, dtype=torch.int64)},
        _meta(COLS),
        f"'{O_PROJ}': idx must be 1-D",
    ),
    "idx negative": (
        {**_cols(), f"{O_PROJ}.idx": torch.tensor([0, -3])},
        _meta(COLS),
        f"'{O_PROJ}': idx has a negative entry",
    ),
    "idx duplicates": (
        {**_cols(), f"{O_PROJ}.idx": torch.tensor([1, 1])},
        _meta(COLS),
        f"'{O_PROJ}': idx has duplicate entries",
    ),
    "columns values mismatch": (
        {**_cols(), f"{O_PROJ}.values": torch.ones(4, 3)},
        _meta(COLS),
        f"'{O_PROJ}': idx has 2 entries but values is \\[4, 3\\]",
    ),
    "rows values mismatch": (
        {**_cols(), f"{O_PROJ}.values": torch.ones(4, 2)},
        _meta({O_PROJ: {"kind": "rows"}}),
        "expected \\[k, in\\]",
    ),
    "rank mismatch": (
        {f"{O_PROJ}.A": torch.ones(2, 4), f"{O_PROJ}.B": torch.ones(4, 3)},
        _meta(LOW),
        f"'{O_PROJ}': lowrank rank mismatch",
    ),
    "nan in lowrank": (
        {f"{O_PROJ}.A": torch.tensor([[1.0, math.nan]]), f"{O_PROJ}.B": torch.ones(4, 1)},
        _meta(LOW),
        f"'{O_PROJ}': A contains NaN or Inf",
    ),
    "inf in values": (
        {**_cols(), f"{O_PROJ}.values": torch.tensor([[1.0, math.inf]] * 4)},
        _meta(COLS),
        "values contains NaN or Inf",
    ),
    "scale bf16": ({f"{O_PROJ}.s": torch.ones(4, dtype=torch.bfloat16)}, _meta(SCALE), "s must be float32"),
    "scale 2-D": ({f"{O_PROJ}.s": torch.ones(4, 1)}, _meta(SCALE), "s must be 1-D"),
    "values int": (
        {**_cols(), f"{O_PROJ}.values": torch.ones(4, 2, dtype=torch.int64)},
        _meta(COLS),
        "values must be",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_file_rejected(tmp_path, case):
    tensors, meta, message = MALFORMED[case]
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(MalformedFile, match=message) as info:
        load_patch(path)
    assert "\n" not in info.value.message
    assert str(path) in info.value.message


@pytest.mark.parametrize(
    "case", ["no format_version", "unknown kind", "missing tensor", "idx int32", "rank mismatch"]
)
def test_summary_rejects_structural_defects(tmp_path, case):
    tensors, meta, message = MALFORMED[case]
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(MalformedFile, match=message):
        read_patch_header(path)


def test_not_safetensors_and_truncated_and_missing(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a safetensors file at all")
    with pytest.raises(MalformedFile, match="not a valid safetensors file"):
        load_patch(junk)

    good = tmp_path / "good.safetensors"
    save_patch(Patch("m", {}, {O_PROJ: Rows(idx=torch.tensor([0, 2]), values=torch.ones(2, 8))}), good)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(MalformedFile, match="not a valid safetensors file"):
        load_patch(truncated)
    with pytest.raises(MalformedFile, match="no such file"):
        load_patch(tmp_path / "absent.safetensors")


def test_columns_save_converts_index_dtype(tmp_path):
    patch = Patch(
        "m", {}, {O_PROJ: Columns(idx=torch.tensor([3, 1], dtype=torch.int32), values=torch.ones(4, 2))}
    )
    loaded = load_patch(save_patch(patch, tmp_path / "p.safetensors"))
    assert loaded.deltas[O_PROJ].idx.dtype == torch.int64
    assert loaded.deltas[O_PROJ].idx.tolist() == [3, 1]


def test_save_refuses_unserialisable_config(tmp_path):
    patch = Patch("x", {"when": object()}, {O_PROJ: Scale(s=torch.ones(4))})
    with pytest.raises(MalformedFile, match="method_config is not JSON-serializable"):
        save_patch(patch, tmp_path / "p.safetensors")
