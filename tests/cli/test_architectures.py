"""`patchreg base show` names the architecture and its default targets; `patchreg train` refuses
settings the base's architecture cannot train, in one line, queueing nothing; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from registry.db import make_engine
from tests.cli.conftest import Patchreg
from tests.helpers import NothingWritten


@pytest.fixture
def zoo(patchreg: Patchreg, make_zoo_model: Callable[..., Path], make_tiny_model, tmp_path: Path) -> Patchreg:
    """phi3:v1, gpt2:v1, odd:v1 (a model_type the catalog does not know); domain med with data."""
    unknown = shutil.copytree(make_tiny_model(seed=0), tmp_path / "odd")
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**config, "model_type": "mysterylm"}))
    patchreg("base", "register", "phi3:v1", str(make_zoo_model("phi3")))
    patchreg("base", "register", "gpt2:v1", str(make_zoo_model("gpt2")))
    patchreg("base", "register", "odd:v1", str(unknown))
    patchreg("domain", "create", "med")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(4)))
    patchreg("dataset", "add", "med", "notes", str(data), "--role", "train")
    return patchreg


def _field(out: str, key: str) -> str:
    return next(line[len(key) :].strip() for line in out.splitlines() if line.startswith(key + " "))


def test_base_show_prints_the_architecture_and_default_targets(zoo: Patchreg) -> None:
    out = zoo("base", "show", "phi3:v1").stdout
    assert _field(out, "architecture") == "Phi-3, decoder layers model.layers.N"
    assert _field(out, "sizes") == "2 layers, hidden 64, 4 heads (2 KV), head size 16"
    targets = "self_attn.qkv_proj, self_attn.o_proj, mlp.gate_up_proj, mlp.down_proj"
    assert _field(out, "  lora") == f"q,k,v,o,gate,up,down: {targets}"
    assert _field(out, "  s2ft") == "o,down: self_attn.o_proj, mlp.down_proj; v_ratio/u_ratio add v,up"
    assert len(_field(out, "arch fingerprint")) == 64

    shown = zoo.json("base", "show", "gpt2:v1")
    assert shown["architecture"]["name"] == "GPT-2" and shown["config"]["n_embd"] == 64

    odd = zoo("base", "show", "odd:v1").stdout
    line = _field(odd, "architecture")
    assert line.startswith("unknown: model_type 'mysterylm' is not in patchreg's architecture catalog")
    assert "default targets (when" not in odd  # no method list without a catalog entry


def test_train_refuses_what_the_architecture_cannot_train(zoo: Patchreg, db_url: str) -> None:
    cases = [
        (
            ["gpt2:v1", "--method", "lora", "--set", "target_modules=q_proj"],
            "target_modules ['q_proj'] match no",
        ),
        (["odd:v1", "--method", "full"], "'mysterylm' is not in patchreg's architecture catalog"),
        (["odd:v1", "--method", "s2ft"], "no attention heads or FFN channels that s2ft can find"),
    ]
    engine = make_engine(db_url)
    try:
        for args, message in cases:
            with NothingWritten(engine, zoo.home / "artifacts"):
                result = zoo("train", "med", "--base", *args, ok=False)
            assert result.exit_code == 1, (args, result.output)
            (line,) = result.stderr.strip().splitlines()
            assert line.startswith("error: ") and message in line, (args, line)
    finally:
        engine.dispose()
    assert zoo.json("jobs", "list") == []
    assert zoo.json("train", "med", "--base", "gpt2:v1", "--method", "lora", "--set", "target_modules=c_fc")
