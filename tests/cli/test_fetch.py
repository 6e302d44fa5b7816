"""`patchreg fetch`: the chosen patch in native, PEFT and merged form, and refusals that write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cli.fetch import fetch
from cli.main import PatchregGroup, cli
from registry.db import make_engine
from registry.sources import peft_base_name
from registry.store import sha256_file
from tests.cli.conftest import Patchreg
from tests.factories import write_patch
from tests.helpers import NothingWritten
from trainer.patch.apply import apply_patch
from trainer.patch.io import load_patch, save_patch
from trainer.patch.types import LowRank
from trainer.patch.types import Patch as PatchFile


@pytest.fixture
def patchreg(patchreg: Patchreg, monkeypatch: pytest.MonkeyPatch) -> Patchreg:
    """The root group plus `fetch`, without touching the real root (cli/main.py registers it)."""
    root = PatchregGroup(
        name="patchreg",
        params=cli.params,
        callback=cli.callback,
        commands={**cli.commands, "fetch": fetch},
        context_settings=cli.context_settings,
    )
    monkeypatch.setattr("tests.cli.conftest.cli", root)
    return patchreg


@pytest.fixture
def base_dir(patchreg: Patchreg, make_tiny_model) -> Path:
    model = make_tiny_model(seed=0)
    patchreg("base", "register", "tiny:v1", str(model))
    patchreg("domain", "create", "medical")
    return model


def _lowrank_patch(path: Path) -> Path:
    """LoRA deltas only: one PEFT LoRA adapter holds them (write_patch mixes in scale, which is IA3)."""
    g = torch.Generator().manual_seed(3)
    deltas = {
        "model.layers.0.self_attn.q_proj": LowRank(
            torch.randn(4, 64, generator=g) * 0.3, torch.randn(64, 4, generator=g) * 0.3, 0.5
        ),
        "model.layers.1.mlp.down_proj": LowRank(
            torch.randn(4, 128, generator=g) * 0.3, torch.randn(64, 4, generator=g) * 0.3, 0.5
        ),
    }
    return save_patch(PatchFile("lora", {"r": 4}, deltas), path)


def _logits(model: torch.nn.Module) -> torch.Tensor:
    ids = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(ids).logits


def _load(model_dir: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


def _expected(base_dir: Path, patch_file: Path) -> torch.Tensor:
    model = _load(base_dir)
    apply_patch(model, load_patch(patch_file))
    return _logits(model)


def test_native_writes_the_verified_file_and_a_manifest(
    patchreg: Patchreg, base_dir: Path, tmp_path: Path
) -> None:
    first = patchreg.json(
        "patch", "import", "medical", "--base", "tiny:v1", str(write_patch(tmp_path / "p.st"))
    )
    out = tmp_path / "native"
    text = patchreg("fetch", "medical", "--base", "tiny:v1", "-o", str(out)).stdout
    assert text.startswith(f"fetched {first['id']} (lora, imported, candidate) for medical on tiny:v1: ")
    assert "newest candidate (no validated patch)" in text
    assert sorted(p.name for p in out.iterdir()) == ["patch.safetensors", "patchreg.json"]
    assert sha256_file(out / "patch.safetensors") == first["digest"]
    manifest = json.loads((out / "patchreg.json").read_text())
    assert manifest["patch_id"] == first["id"] and manifest["digest"] == first["digest"]
    assert (manifest["domain"], manifest["base"], manifest["method"]) == ("medical", "tiny:v1", "lora")
    assert manifest["why"] == "newest candidate (no validated patch)"

    patchreg("alias", "set", "medical", "--base", "tiny:v1", "production", first["id"])
    summary = patchreg.json("fetch", "medical", "--base", "tiny:v1", "-o", str(tmp_path / "again"))
    assert (summary["patch"]["id"], summary["why"], summary["format"]) == (
        first["id"],
        "alias production",
        "native",
    )
    assert summary["files"] == ["patch.safetensors", "patchreg.json"]


def test_peft_loads_on_the_base_and_matches_apply_patch(
    patchreg: Patchreg, base_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftModel

    file = _lowrank_patch(tmp_path / "lora.st")
    patchreg("patch", "import", "medical", "--base", "tiny:v1", str(file))
    out = tmp_path / "adapter"
    patchreg("fetch", "medical", "--base", "tiny:v1", "--format", "peft", "-o", str(out))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_dir.resolve()) and config["revision"] is None
    assert (out / "patchreg.json").is_file()

    base = _load(base_dir)
    before = _logits(base)
    got = _logits(PeftModel.from_pretrained(base, out).eval())
    expected = _expected(base_dir, file)
    assert (expected - before).abs().max() > 1e-2  # the patch does something
    assert (expected - got).abs().max() <= 1e-5


def test_merged_is_a_standalone_model(patchreg: Patchreg, base_dir: Path, tmp_path: Path) -> None:
    file = _lowrank_patch(tmp_path / "lora.st")
    patchreg("patch", "import", "medical", "--base", "tiny:v1", str(file))
    out = tmp_path / "merged"
    patchreg("fetch", "medical", "--base", "tiny:v1", "--format", "merged", "-o", str(out))
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert (_logits(_load(out)) - _expected(base_dir, file)).abs().max() <= 1e-5
    card = (out / "README.md").read_text()  # a local base: no base_model id to name
    assert card.startswith('---\nbase_model_relation: "finetune"\nlibrary_name: "transformers"\ntags: ')
    assert "| base revision | local files (no revision) |" in card


def test_refusals_write_nothing(patchreg: Patchreg, db_url: str, base_dir: Path, tmp_path: Path) -> None:
    patchreg("patch", "import", "medical", "--base", "tiny:v1", str(write_patch(tmp_path / "p.st")))
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    engine = make_engine(db_url)
    try:
        with NothingWritten(engine, patchreg.home / "artifacts"):
            refused = patchreg("fetch", "medical", "--base", "tiny:v1", "-o", str(full), ok=False)
            # write_patch mixes scale (IA3) with LoRA kinds: no single PEFT adapter holds it
            mixed = patchreg(
                "fetch",
                "medical",
                "--base",
                "tiny:v1",
                "--format",
                "peft",
                "-o",
                str(tmp_path / "x"),
                ok=False,
            )
            missing = patchreg(
                "fetch",
                "medical",
                "--base",
                "tiny:v1",
                "--method",
                "s2ft",
                "-o",
                str(tmp_path / "y"),
                ok=False,
            )
    finally:
        engine.dispose()
    assert (
        refused.exit_code == 1
        and refused.stderr == f"error: output directory {full} already exists and is not empty\n"
    )
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    assert mixed.exit_code == 1 and "mixes scale deltas" in mixed.stderr and mixed.stderr.count("\n") == 1
    assert missing.exit_code == 1 and "no patch for medical on tiny:v1 with method s2ft: " in missing.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no scratch left
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_peft_base_name() -> None:
    assert peft_base_name("hf://meta-llama/Llama-3.1-8B@abc123") == "meta-llama/Llama-3.1-8B"
    assert peft_base_name("/models/tiny") == "/models/tiny"


def _propulsion_patch(path: Path) -> Path:
    """Scales on every output channel of two modules: no exact LoRA form that is smaller than W."""
    from trainer.patch.types import Scale

    g = torch.Generator().manual_seed(5)
    deltas = {
        "model.layers.0.self_attn.o_proj": Scale(1 + 0.1 * torch.randn(64, generator=g)),
        "model.layers.1.mlp.up_proj": Scale(1 + 0.1 * torch.randn(128, generator=g)),
    }
    return save_patch(PatchFile("propulsion", {}, deltas), path)


def test_target_vllm_is_an_adapter_peft_loads_with_our_logits(
    patchreg: Patchreg, base_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftModel

    file = _lowrank_patch(tmp_path / "lora.st")
    patchreg("patch", "import", "medical", "--base", "tiny:v1", str(file))
    out = tmp_path / "vllm"
    text = patchreg("fetch", "medical", "--base", "tiny:v1", "--target", "vllm", "-o", str(out)).stdout
    assert f"wrote vllm adapter to {out}" in text and "vllm: padded, rank 8" in text
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["rank_pattern"]) == (8, 8, {})
    manifest = json.loads((out / "patchreg.json").read_text())
    assert manifest["format"] == "peft" and manifest["target"] == "vllm"
    assert manifest["export"]["rank"] == 8 and manifest["export"]["status"] == "padded"
    got = _logits(PeftModel.from_pretrained(_load(base_dir), out).eval())
    assert (got - _expected(base_dir, file)).abs().max() <= 1e-5


def test_dry_run_says_how_every_engine_loads_it_and_writes_nothing(
    patchreg: Patchreg, db_url: str, base_dir: Path, tmp_path: Path
) -> None:
    patchreg("patch", "import", "medical", "--base", "tiny:v1", str(_lowrank_patch(tmp_path / "lora.st")))
    engine = make_engine(db_url)
    try:
        with NothingWritten(engine, patchreg.home / "artifacts"):
            text = patchreg("fetch", "medical", "--base", "tiny:v1", "--dry-run").stdout
            data = patchreg.json("fetch", "medical", "--base", "tiny:v1", "--dry-run")
    finally:
        engine.dispose()
    lines = text.splitlines()
    assert lines[0].startswith("would fetch ") and lines[0].endswith("newest candidate (no validated patch)")
    assert [line.split(":")[0] for line in lines[1:]] == [
        "PEFT",
        "vLLM",
        "SGLang",
        "LoRAX",
        "TGI",
        "llama.cpp",
    ]
    assert "vLLM: loads with padding (rank 8, +" in text and "vllm/lora/peft_helper.py" in text
    assert [s["status"] for s in data["serving"]] == ["exact"] + ["padded"] * 5  # zeros for absent layers
    assert not any(p.name.startswith("patchreg-fetch") for p in tmp_path.iterdir())


def test_propulsion_for_an_engine_needs_approximate_and_reports_its_error(
    patchreg: Patchreg, db_url: str, base_dir: Path, tmp_path: Path
) -> None:
    from trainer.family import domain_rows, write_jsonl

    _, evals = domain_rows()
    patchreg(
        "dataset",
        "add",
        "medical",
        "quiz",
        str(write_jsonl(evals[:12], tmp_path / "q.jsonl")),
        "--role",
        "eval",
    )
    patchreg("patch", "import", "medical", "--base", "tiny:v1", str(_propulsion_patch(tmp_path / "prop.st")))
    engine = make_engine(db_url)
    try:
        with NothingWritten(engine, patchreg.home / "artifacts"):
            refused = patchreg(
                "fetch",
                "medical",
                "--base",
                "tiny:v1",
                "--target",
                "sglang",
                "-o",
                str(tmp_path / "a"),
                ok=False,
            )
            wrong = patchreg(
                "fetch",
                "medical",
                "--base",
                "tiny:v1",
                "--target",
                "tgi",
                "--format",
                "merged",
                "-o",
                str(tmp_path / "b"),
                ok=False,
            )
    finally:
        engine.dispose()
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
    assert "SGLang cannot load this patch" in refused.stderr and "--approximate RANK" in refused.stderr
    assert wrong.exit_code == 2 and "--target tgi shapes an adapter" in wrong.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

    out = tmp_path / "approx"
    text = patchreg(
        "fetch", "medical", "--base", "tiny:v1", "--target", "sglang", "--approximate", "4", "-o", str(out)
    ).stdout
    assert "rank-4 SVD: weight error up to " in text and "logit error" in text
    approx = json.loads((out / "patchreg.json").read_text())["export"]["approximation"]
    assert approx["rank"] == 4 and approx["logit_texts"] == 8  # the domain's eval rows
    assert set(approx["relative_error"]) == {"model.layers.0.self_attn.o_proj", "model.layers.1.mlp.up_proj"}
