"""`export` and `patch inspect` commands, driven through click's CliRunner on the command objects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli.patchfile import export_command, inspect_command
from core.errors import IncompatibleModel, MalformedFile
from trainer.patch.io import save_patch
from trainer.patch.types import Patch, Scale

O_PROJ_0 = "model.layers.0.self_attn.o_proj"
DOWN_1 = "model.layers.1.mlp.down_proj"


@pytest.fixture
def lora_patch_file(tmp_path, tiny_model, random_patch) -> Path:
    patch = random_patch(tiny_model, {O_PROJ_0: "columns", DOWN_1: "lowrank"}, ranks={O_PROJ_0: 3, DOWN_1: 6})
    patch.method = "s2ft"
    return save_patch(patch, tmp_path / "patch.safetensors")


def test_inspect_table(lora_patch_file):
    result = CliRunner().invoke(inspect_command, [str(lora_patch_file)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "s2ft" in lines[1] and "LORA, max rank 6" in result.output
    row = next(line for line in lines if line.startswith(DOWN_1))
    assert row.split()[:5] == [DOWN_1, "lowrank", "A[6,128]", "B[64,6]", "6"]
    header = next(line for line in lines if line.startswith("MODULE"))
    assert header.index("KIND") == row.index("lowrank")  # columns are aligned


def test_inspect_json(lora_patch_file):
    result = CliRunner().invoke(inspect_command, [str(lora_patch_file), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["method"] == "s2ft" and info["format_version"] == 2 and info["export_rank"] == 6
    assert info["modules"][O_PROJ_0]["kind"] == "columns" and info["modules"][O_PROJ_0]["rank"] == 3
    assert info["modules"][O_PROJ_0]["tensors"]["idx"] == {"shape": [3], "dtype": "int64"}
    assert info["num_params"] == 64 * 3 + 6 * 128 + 64 * 6
    assert info["peft_adapter"] == "LORA"


def test_inspect_malformed_raises_trainer_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_text("garbage")
    result = CliRunner().invoke(inspect_command, [str(bad)])
    assert isinstance(result.exception, MalformedFile)


def test_export_peft_and_merged(tmp_path, tiny_model_dir, lora_patch_file, input_ids):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    runner = CliRunner()
    peft_dir, merged_dir = tmp_path / "peft", tmp_path / "merged"
    args = [str(lora_patch_file), "--model", str(tiny_model_dir)]
    result = runner.invoke(
        export_command,
        [
            *args,
            "--format",
            "peft",
            "-o",
            str(peft_dir),
            "--base-name",
            "org/tiny",
            "--revision",
            "r1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["export_rank"] == 6
    config = json.loads((peft_dir / "adapter_config.json").read_text())
    assert (config["base_model_name_or_path"], config["revision"]) == ("org/tiny", "r1")

    result = runner.invoke(export_command, [*args, "--format", "merged", "-o", str(merged_dir)])
    assert result.exit_code == 0, result.output
    assert "merged model" in result.output

    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(merged_dir)(input_ids).logits
        adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), peft_dir)
        assert (merged - adapter(input_ids).logits).abs().max() <= 1e-5


def test_export_incompatible_model_raises(tmp_path, tiny_model_dir):
    patch_file = save_patch(
        Patch("m", {}, {"model.layers.7.mlp.up_proj": Scale(s=torch.ones(128))}), tmp_path / "p.safetensors"
    )
    result = CliRunner().invoke(
        export_command,
        [str(patch_file), "--model", str(tiny_model_dir), "--format", "peft", "-o", str(tmp_path / "o")],
    )
    assert isinstance(result.exception, IncompatibleModel)
    assert not (tmp_path / "o").exists()


def test_importing_cli_does_not_import_torch():
    code = "import sys, cli.patchfile; sys.exit(1 if 'torch' in sys.modules else 0)"
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_inspect_honours_root_json_flag(lora_patch_file):
    from types import SimpleNamespace

    result = CliRunner().invoke(
        inspect_command, [str(lora_patch_file)], obj=SimpleNamespace(json_output=True)
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["method"] == "s2ft"


def test_export_for_an_engine_prints_rank_and_padding_and_writes_its_manifest(
    tmp_path, tiny_model_dir, lora_patch_file, input_ids
):
    from peft import PeftModel

    from trainer.hf import load_causal_lm
    from trainer.patch.apply import apply_patch
    from trainer.patch.io import load_patch

    out = tmp_path / "sglang"
    args = [str(lora_patch_file), "--model", str(tiny_model_dir), "--format", "peft", "--target", "sglang"]
    result = CliRunner().invoke(export_command, [*args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"exported a sglang LoRA adapter for 2 patched modules to {out}\n")
    assert "sglang: padded, rank 6; padding adds " in result.output
    manifest = json.loads((out / "patchreg.json").read_text())
    assert manifest["target"] == "sglang" and manifest["export"]["rank"] == 6
    model = load_causal_lm(tiny_model_dir).eval()
    with torch.no_grad(), apply_patch(model, load_patch(lora_patch_file)):
        ours = model(input_ids).logits
    with torch.no_grad():
        theirs = PeftModel.from_pretrained(load_causal_lm(tiny_model_dir), out).eval()(input_ids).logits
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)

    refused = CliRunner().invoke(
        export_command, [*args[:4], "merged", "--target", "vllm", "-o", str(tmp_path / "m")]
    )
    assert "does not apply to --format merged" in str(refused.exception) and not (tmp_path / "m").exists()
