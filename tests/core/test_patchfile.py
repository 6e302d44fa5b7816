"""The patch file specification: one parser for the registry and the trainer, torch-free."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from core.errors import MalformedFile
from core.fit import module_misfit
from core.patchfile import read_patch_header
from tests.properties import bounded, dumps, json_values
from trainer.patch.io import describe, save_patch
from trainer.patch.peft_export import export_rank
from trainer.patch.types import Columns, LowRank, Patch, Scale

Q = "model.layers.0.self_attn.q_proj"
OP = "model.layers.0.self_attn.o_proj"


def test_both_sides_agree_on_the_export_rank_of_mixed_kinds(tmp_path: Path) -> None:
    """lowrank + scale has no single PEFT adapter type: no LoRA rank, from the file or the tensors."""
    mixed = Patch("lora", {}, {Q: LowRank(torch.ones(4, 8), torch.ones(8, 4), 1.0), OP: Scale(torch.ones(8))})
    path = save_patch(mixed, tmp_path / "mixed.safetensors")
    assert read_patch_header(path).export_rank is None
    assert export_rank(mixed) is None and describe(mixed).export_rank is None
    assert read_patch_header(path).peft_adapter is None

    lora = Patch("lora", {}, {Q: LowRank(torch.ones(4, 8), torch.ones(8, 4), 1.0)})
    cols = Patch("s2ft", {}, {OP: Columns(torch.tensor([1, 2, 5, 6, 7, 0]), torch.ones(8, 6))})
    for patch, rank in ((lora, 4), (cols, 6)):
        file = save_patch(patch, tmp_path / f"{patch.method}.safetensors")
        assert read_patch_header(file).export_rank == export_rank(patch) == rank


def test_the_header_reader_imports_no_torch(tmp_path: Path) -> None:
    path = save_patch(Patch("lora", {}, {OP: Scale(torch.ones(8))}), tmp_path / "p.safetensors")
    code = (
        "import sys; from core.patchfile import read_patch_header; "
        f"h = read_patch_header({str(path)!r}); "
        "sys.exit(1 if 'torch' in sys.modules else 0 if h.method == 'lora' else 2)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_registry_refuses_what_the_trainer_refuses(tmp_path: Path) -> None:
    """A 0-d scale tensor: structurally invalid for both readers, before any tensor is loaded."""
    from safetensors.torch import save_file

    path = tmp_path / "bad.safetensors"
    meta = {
        "format_version": "1",
        "method": "m",
        "method_config": "{}",
        "modules": f'{{"{OP}": {{"kind": "scale"}}}}',
    }
    save_file({f"{OP}.s": torch.tensor(1.0)}, str(path), metadata=meta)
    with pytest.raises(MalformedFile, match="s must be 1-D"):
        read_patch_header(path)


@pytest.mark.parametrize(
    ("kind", "shapes", "weight", "max_index", "code"),
    [
        ("lowrank", {"A": (4, 8), "B": (16, 4)}, (16, 8), None, None),
        ("lowrank", {"A": (4, 8), "B": (16, 4)}, (8, 8), None, "shape_mismatch"),
        ("columns", {"idx": (2,), "values": (16, 2)}, (16, 99), 98, None),
        ("columns", {"idx": (2,), "values": (16, 2)}, (16, 8), 8, "shape_mismatch"),
        ("rows", {"idx": (2,), "values": (2, 8)}, (4, 8), 3, None),
        ("scale", {"s": (16,)}, None, None, "module_missing"),
        ("dense", {"delta": (3, 5)}, (3, 5, 1), None, "module_missing"),
    ],
)
def test_one_fit_rule(kind, shapes, weight, max_index, code) -> None:
    misfit = module_misfit("m", kind, shapes, weight, target="the model", max_index=max_index)
    assert (misfit.code if misfit else None) == code


def test_a_changed_module_shape_is_refused_even_where_the_delta_fits() -> None:
    misfit = module_misfit("m", "scale", {"s": (16,)}, (16, 12), target="v2", expected_weight=(16, 8))
    assert (
        misfit is not None
        and misfit.message == "module m: patch (scale) expects weight [16, 8], v2 has [16, 12]"
    )


def _header_of(tmp_path: Path, modules: object, tensors: dict, **meta: str) -> object:
    from tests.factories import raw_patch

    return read_patch_header(raw_patch(tmp_path / "p.safetensors", modules, tensors, **meta))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("modules", "tensors", "meta", "message"),
    [
        ({OP: {"kind": "scale"}}, {f"{OP}.s": ("F32", (), bytes(4))}, {}, "s must be 1-D"),
        ({OP: {"kind": "dense"}}, {f"{OP}.delta": ("F32", (2, 2, 2), bytes(32))}, {}, "delta must be 2-D"),
        (
            {Q: {"kind": "lowrank", "scale": 1}},
            {f"{Q}.A": ("F32", (1, 2), bytes(8)), f"{Q}.B": ("F32", (), bytes(4))},
            {},
            "B must be 2-D",
        ),
        (
            {OP: {"kind": "scale"}},
            {f"{OP}.s": ("F32", (1,), bytes(4))},
            {"method_config": "[]"},
            "found list",
        ),
        (
            {OP: {"kind": "scale"}},
            {f"{OP}.s": ("F32", (1,), bytes(4))},
            {"method_config": "null"},
            "found NoneType",
        ),
        (
            {OP: {"kind": "scale"}},
            {f"{OP}.s": ("F32", (1,), bytes(4))},
            {"method_config": "[" * 100_000 + "]" * 100_000},
            "method_config metadata: JSON nested more than 32 levels deep",
        ),
        (
            {OP: {"kind": "scale"}},
            {f"{OP}.s": ("F32", (1,), bytes(4))},
            {"method_config": '{"r": ' + "9" * 5000 + "}"},
            "an integer has 5,000 digits",
        ),
        ('{"m": {"kind": "lowrank", "scale": NaN}}', {}, {}, "NaN is not a number"),
        (
            {OP: {"kind": "scale"}},
            {f"{OP}.s": ("F32", (1,), bytes(4))},
            {"method": "x" * 40},
            "not a method name",
        ),
        ({OP: {"kind": "scale"}}, {f"{OP}.s": ("F32", (1,), bytes(4))}, {"method": "a\x00"}, "NUL"),
    ],
)
def test_hostile_metadata_and_shapes_are_malformed(
    tmp_path: Path, modules: object, tensors: dict, meta: dict[str, str], message: str
) -> None:
    with pytest.raises(MalformedFile, match=message):
        _header_of(tmp_path, modules, tensors, **meta)


@bounded()
@given(
    st.dictionaries(
        st.sampled_from(["format_version", "method", "method_config", "modules", "x"]),
        json_values.map(dumps) | st.text(max_size=12),
        max_size=5,
    ),
    st.dictionaries(
        st.sampled_from([f"{OP}.s", f"{Q}.A", f"{Q}.B", f"{OP}.idx", f"{OP}.values", f"{OP}.delta"]),
        st.tuples(
            st.sampled_from(["F32", "F16", "BF16", "I64", "U8"]),
            st.lists(st.integers(0, 3), max_size=3).map(tuple),
        ),
        max_size=4,
    ),
)
def test_any_metadata_and_tensor_table_builds_or_is_refused(meta: dict[str, str], table: dict) -> None:
    from core.errors import InvalidInput
    from core.patchfile import build_header
    from core.safetensors_header import TensorInfo

    infos = {name: TensorInfo(name, dtype, shape) for name, (dtype, shape) in table.items()}
    try:
        build_header(meta, infos, "p")
    except InvalidInput as exc:
        assert exc.message.startswith("p: ") and "\n" not in exc.message
