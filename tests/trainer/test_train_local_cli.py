"""`train-local` and `eval` through click's CliRunner on the command objects."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from cli.train_local import eval_command, train_local_command
from core.errors import ConfigError


def test_train_local_writes_a_loadable_patch_and_eval_uses_it(
    tiny_model_dir, write_jsonl, train_rows, tmp_path
):
    from trainer.patch.io import load_patch

    data = write_jsonl(train_rows)
    out = tmp_path / "p.safetensors"
    args = [str(tiny_model_dir), str(data), "--method", "s2ft", "--set", "d_ratio=0.1", "--steps", "3"]
    result = CliRunner().invoke(train_local_command, [*args, "--lr", "1e-2", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["steps"] == 3 and summary["method_config"]["d_ratio"] == 0.1
    patch = load_patch(out)
    assert patch.method == "s2ft" and len(patch.metadata["data_sha256"]) == 64

    base = json.loads(CliRunner().invoke(eval_command, [str(tiny_model_dir), str(data), "--json"]).output)
    run = CliRunner().invoke(eval_command, [str(tiny_model_dir), str(data), "--patch", str(out), "--json"])
    patched = json.loads(run.output)
    assert patched["loss"] < base["loss"] and patched["patch"] == str(out)


def test_train_local_with_alewr_computes_then_reuses_importance(
    tiny_model_dir, write_jsonl, train_rows, tmp_path
):
    from tests.trainer.conftest import corpus_rows

    data, general = write_jsonl(train_rows), write_jsonl(corpus_rows(4, start=300), "general.jsonl")
    importance = tmp_path / "omega.safetensors"
    common = [str(tiny_model_dir), str(data), "--method", "full", "--regularize", "alewr", "--steps", "1"]
    first = CliRunner().invoke(
        train_local_command,
        [*common, "--general", str(general), "--importance", str(importance), "-o", str(tmp_path / "a.st")],
    )
    assert first.exit_code == 0, first.output
    stamp = importance.stat().st_mtime_ns
    second = CliRunner().invoke(
        train_local_command, [*common, "--importance", str(importance), "-o", str(tmp_path / "b.st")]
    )
    assert second.exit_code == 0, second.output
    assert importance.stat().st_mtime_ns == stamp  # reused, not recomputed


def test_bad_settings_propagate_as_trainer_errors(tiny_model_dir, write_jsonl, train_rows, tmp_path):
    data = write_jsonl(train_rows)
    args = [str(tiny_model_dir), str(data), "--method", "lora", "--set", "rank=4", "-o", str(tmp_path / "p")]
    result = CliRunner().invoke(train_local_command, args)
    assert isinstance(result.exception, ConfigError)
    assert "allowed: alpha, dropout, r, target_modules" in result.exception.message


def test_text_output_and_progress(tiny_model_dir, write_jsonl, train_rows, tmp_path):
    data = write_jsonl(train_rows)
    args = [
        str(tiny_model_dir),
        str(data),
        "--method",
        "propulsion",
        "--steps",
        "2",
        "-o",
        str(tmp_path / "p.st"),
    ]
    result = CliRunner().invoke(train_local_command, args)
    assert result.exit_code == 0, result.output
    assert "propulsion, 1,024 trainable params over 14 modules" in result.output


def test_importing_the_commands_does_not_import_torch():
    code = "import sys, cli.train_local; assert 'torch' not in sys.modules and 'trainer' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
