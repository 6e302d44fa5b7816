"""`materialize`: one atomic output directory per fetch, whatever the format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import AlreadyExists, InvalidInput
from core.fetch import FetchPlan
from tests.factories import write_patch
from trainer.patch.materialize import Export, materialize

PLAN = FetchPlan(
    patch_id="1bd9c0ffee42",
    domain="medical",
    base="tiny:v1",
    base_name="/models/tiny",
    revision=None,
    source_uri="/models/tiny",
    method="lora",
    origin="imported",
    status="candidate",
    digest="0" * 64,
    why="newest candidate (no validated patch)",
)


def test_native_is_the_file_and_the_manifest(tmp_path: Path) -> None:
    file = write_patch(tmp_path / "p.safetensors")
    out = tmp_path / "out"
    assert materialize(PLAN, "native", file, out) == (["patch.safetensors", "patchreg.json"], {})
    assert (out / "patch.safetensors").read_bytes() == file.read_bytes()
    assert (out / "patchreg.json").read_text() == json.dumps(PLAN.manifest("native"), indent=2) + "\n"


def test_refusals_write_nothing(tmp_path: Path) -> None:
    file = write_patch(tmp_path / "p.safetensors")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(AlreadyExists, match="not empty"):
        materialize(PLAN, "native", file, full)
    with pytest.raises(InvalidInput, match="needs the base model's files"):
        materialize(PLAN, "merged", file, tmp_path / "merged")
    with pytest.raises(InvalidInput, match="unknown fetch format"):
        materialize(PLAN, "gguf", file, tmp_path / "gguf")
    with pytest.raises(InvalidInput, match="mixes scale deltas"):  # LoRA kinds and scale: no one adapter
        materialize(PLAN, "peft", file, tmp_path / "peft")
    with pytest.raises(InvalidInput, match="does not apply to --format native"):
        materialize(PLAN, "native", file, tmp_path / "vllm", export=Export("vllm"))
    with pytest.raises(InvalidInput, match="unknown export target"):
        materialize(PLAN, "peft", file, tmp_path / "vllm", export=Export("gguf"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "p.safetensors"]
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
