"""`FetchPlan.manifest`: exactly the `patchreg.json` a fetch writes, in every format; torch-free."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest

from core.errors import InvalidInput
from core.fetch import FORMATS, MANIFEST, FetchPlan

ROOT = Path(__file__).resolve().parents[2]
PLAN = FetchPlan(
    patch_id="1bd9c0ffee42",
    domain="medical",
    base="llama3:3.1",
    base_name="meta-llama/Llama-3.1-8B",
    revision="abc123",
    source_uri="hf://meta-llama/Llama-3.1-8B@abc123",
    method="lora",
    origin="ported",
    status="validated",
    digest="ab" * 32,
    why="alias production",
    module_shapes={"model.layers.0.self_attn.q_proj": (4096, 4096)},
)


def test_manifest_is_todays_patchreg_json() -> None:
    assert FORMATS == ("native", "peft", "merged") and MANIFEST == "patchreg.json"
    manifest = PLAN.manifest("peft")
    assert list(manifest.items()) == [
        ("patch_id", "1bd9c0ffee42"),
        ("domain", "medical"),
        ("base", "llama3:3.1"),
        ("base_source", "hf://meta-llama/Llama-3.1-8B@abc123"),
        ("revision", "abc123"),
        ("method", "lora"),
        ("origin", "ported"),
        ("status", "validated"),
        ("digest", "ab" * 32),
        ("format", "peft"),
        ("target", "peft"),  # the engine a peft-format adapter is shaped for
        ("why", "alias production"),
    ]
    assert PLAN.manifest("peft", "vllm")["target"] == "vllm" and "target" not in PLAN.manifest("merged")
    assert json.loads(json.dumps(manifest)) == manifest  # JSON-ready as it is
    assert {fmt: PLAN.manifest(fmt)["format"] for fmt in FORMATS} == {f: f for f in FORMATS}
    local = replace(PLAN, source_uri="/models/tiny", base_name="/models/tiny", revision=None)
    assert (local.manifest("native")["base_source"], local.manifest("native")["revision"]) == (
        "/models/tiny",
        None,
    )


def test_a_plan_is_frozen_and_knows_its_formats() -> None:
    with pytest.raises(InvalidInput, match="unknown fetch format 'gguf'"):
        PLAN.manifest("gguf")
    with pytest.raises(FrozenInstanceError):
        PLAN.status = "degraded"  # type: ignore[misc]
    assert hash(PLAN) == hash(replace(PLAN, module_shapes={}))  # hashable: the shapes dict is left out


def test_core_fetch_and_the_native_materialiser_load_no_torch(tmp_path: Path) -> None:
    code = (
        "import sys, core.fetch, trainer.patch.materialize\n"
        "sys.exit(1 if {'torch', 'transformers', 'peft'} & set(sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0
