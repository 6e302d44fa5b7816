"""patch import/list/show, compat, lineage and alias from the command line."""

from __future__ import annotations

from pathlib import Path

from registry.db import make_engine, session_factory, transaction
from registry.services import ports
from registry.store import LocalStore
from tests.cli.conftest import Patchreg
from tests.factories import write_patch


def test_import_compat_lineage_alias(
    patchreg: Patchreg, db_url: str, make_tiny_model, tmp_path: Path
) -> None:
    patchreg("base", "register", "tiny:v1", str(make_tiny_model(seed=0)))
    patchreg("base", "register", "tiny:v2", str(make_tiny_model(seed=1)), "--parent", "tiny:v1")
    patchreg("base", "register", "tiny:v3", str(make_tiny_model(seed=0, hidden_size=96)))
    patchreg("domain", "create", "medical")
    imported = patchreg.json(
        "patch", "import", "medical", "--base", "tiny:v1", str(write_patch(tmp_path / "p.st"))
    )
    pid = imported["id"]
    assert (imported["origin"], imported["status"]) == ("imported", "candidate")
    assert [p["id"] for p in patchreg.json("patch", "list", "--domain", "medical")] == [pid]
    assert patchreg.json("patch", "show", pid[:5])["base"] == "tiny:v1"

    ok = patchreg.json("compat", pid, "--base", "tiny:v2")
    assert (ok["verdict"], ok["export_rank"]) == ("compatible", None)  # mixed kinds: no LoRA form
    human = patchreg("compat", pid, "--base", "tiny:v3", ok=True).stdout
    assert "incompatible" in human and "shape_mismatch" in human and "[96, 96]" in human

    engine = make_engine(db_url)
    with transaction(session_factory(engine)) as s:
        ported = ports.port_patch(s, LocalStore(patchreg.home / "artifacts"), pid, "tiny:v2").patch
    engine.dispose()
    assert ported is not None
    tree = patchreg.json("lineage", ported.id)
    assert tree["root"]["patch"]["id"] == pid
    assert tree["root"]["children"][0]["patch"]["id"] == ported.id
    text = patchreg("lineage", pid).stdout.splitlines()
    assert (
        text[0].startswith(pid) and text[1].startswith(f"└─ {ported.id}") and "verdict compatible" in text[1]
    )

    patchreg("alias", "set", "medical", "--base", "tiny:v2", "production", ported.id[:6])
    assert patchreg.json("alias", "list")[0]["patch_id"] == ported.id
    wrong = patchreg("alias", "set", "medical", "--base", "tiny:v1", "production", ported.id, ok=False)
    assert wrong.exit_code == 1 and "not medical on tiny:v1" in wrong.stderr


def test_import_a_peft_lora_adapter_directory(patchreg: Patchreg, make_tiny_model, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from trainer.tiny import build_model

    model = get_peft_model(
        build_model(),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    torch.manual_seed(0)
    model.save_pretrained(tmp_path / "adapter")
    patchreg("base", "register", "tiny:v1", str(make_tiny_model(seed=0)))
    patchreg("domain", "create", "medical")
    row = patchreg.json("patch", "import", "medical", "--base", "tiny:v1", str(tmp_path / "adapter"))
    assert (row["method"], row["origin"]) == ("lora", "imported")
    assert row["trainable_params"] == 2 * ((4 * 64 + 64 * 4) + (4 * 64 + 32 * 4))  # v_proj: 32 out (GQA)
    broken = tmp_path / "not-an-adapter"
    broken.mkdir()
    result = patchreg("patch", "import", "medical", "--base", "tiny:v1", str(broken), ok=False)
    assert result.exit_code == 1 and result.stderr.startswith("error: ")
