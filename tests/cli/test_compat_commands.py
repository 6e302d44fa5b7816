"""`patchreg compat PATCH --base F:V` and `patchreg compat matrix FAMILY` under one name, with help."""

from __future__ import annotations

from pathlib import Path

from registry.db import make_engine, session_factory, transaction
from registry.services import patches, ports
from registry.store import LocalStore
from tests.cli.conftest import Patchreg
from tests.factories import write_patch


def _family(patchreg: Patchreg, make_tiny_model, tmp_path: Path) -> str:
    patchreg("base", "register", "tiny:v1", str(make_tiny_model(seed=0)))
    patchreg("base", "register", "tiny:v2", str(make_tiny_model(seed=1)), "--parent", "tiny:v1")
    patchreg("base", "register", "tiny:v3", str(make_tiny_model(seed=0, hidden_size=96)))
    patchreg("domain", "create", "medical")
    row = patchreg.json(
        "patch", "import", "medical", "--base", "tiny:v1", str(write_patch(tmp_path / "p.st"))
    )
    return row["id"]


def test_check_and_matrix_share_the_name(
    patchreg: Patchreg, db_url: str, make_tiny_model, tmp_path: Path
) -> None:
    pid = _family(patchreg, make_tiny_model, tmp_path)
    assert patchreg.json("compat", pid, "--base", "tiny:v3")["verdict"] == "incompatible"
    assert patchreg.json("compat", "--base", "tiny:v1", pid)["verdict"] == "compatible"  # options first too
    engine = make_engine(db_url)
    with transaction(session_factory(engine)) as s:
        copy = ports.port_patch(s, LocalStore(patchreg.home / "artifacts"), pid, "tiny:v2").patch
        assert copy is not None
        patches.set_status(s, copy.id, "validated", "test")
    engine.dispose()

    table = patchreg.json("compat", "matrix", "tiny")
    assert table["versions"] == ["tiny:v1", "tiny:v2", "tiny:v3"]
    assert [c["label"] for c in table["rows"][0]["cells"]] == [
        "source (candidate)",
        "validated",
        "incompatible",
    ]
    lines = patchreg("compat", "matrix", "tiny", "--domain", "medical").stdout.splitlines()
    assert lines[0].split() == ["PATCH", "DOMAIN", "METHOD", "v1", "v2", "v3"]
    assert lines[1].split("  ")[0] == pid and "source (candidate)" in lines[1] and "incompatible" in lines[1]
    assert lines[0].index("v2") == lines[1].index("validated")  # aligned columns
    assert (
        patchreg("--json", "compat", "matrix", "tiny", "--domain", "medical").stdout.lstrip().startswith("{")
    )

    missing = patchreg("compat", "matrix", "nope", ok=False)
    assert missing.exit_code == 1 and missing.stderr == "error: no base family named 'nope'\n"
    no_base = patchreg("compat", pid, ok=False)
    assert no_base.exit_code == 2 and "Missing option '--base'" in no_base.stderr
    assert "Usage: cli compat [OPTIONS] PATCH\nTry 'cli compat --help' for help." in no_base.stderr


def test_help_for_each_form(patchreg: Patchreg) -> None:
    group = patchreg("compat", "--help").stdout
    assert "Usage: cli compat (PATCH --base FAMILY:VERSION | matrix FAMILY [--domain D])" in group
    assert "patchreg compat matrix FAMILY [--domain D]" in group and "matrix" in group.split("Commands:")[1]
    check = patchreg("compat", "abcd1234", "--help").stdout
    assert check.startswith("Usage: cli compat [OPTIONS] PATCH") and "--base FAMILY:VERSION" in check
    matrix = patchreg("compat", "matrix", "--help").stdout
    assert matrix.startswith("Usage: cli compat matrix [OPTIONS] FAMILY") and "--domain D" in matrix
    bare = patchreg("compat", ok=False)  # no arguments: the group's help, as for every group
    assert "Usage: cli compat (PATCH" in bare.output and "matrix" in bare.output


def test_serving_says_how_each_engine_loads_the_patch(
    patchreg: Patchreg, make_tiny_model, tmp_path: Path
) -> None:
    """write_patch mixes kinds (lowrank, columns, and a scale on all 64 channels of down_proj): PEFT
    has no single adapter for it, and no engine an exact LoRA form of that scale."""
    pid = _family(patchreg, make_tiny_model, tmp_path)
    text = patchreg("compat", pid, "--base", "tiny:v2", "--serving").stdout
    lines = text.splitlines()[-6:]
    assert [line.split(":")[0] for line in lines] == ["PEFT", "vLLM", "SGLang", "LoRAX", "TGI", "llama.cpp"]
    assert lines[0].startswith("PEFT: needs --format merged: patch mixes scale deltas")
    data = patchreg.json("compat", pid, "--base", "tiny:v2", "--serving")
    assert data["verdict"] == "compatible" and len(data["serving"]) == 6
    engines = {s["target"]: s for s in data["serving"]}
    for name in ("vllm", "sglang", "lorax", "tgi", "llama.cpp"):
        assert engines[name]["status"] == "merged" and engines[name]["line"] in text
        assert "a scale delta changing 64 channels" in engines[name]["rule"]
        assert engines[name]["line"].endswith("; or --approximate RANK (truncated SVD)")
    assert "serving" not in patchreg.json("compat", pid, "--base", "tiny:v2")  # only when asked


def test_compat_and_port_forecast_before_any_evaluation(
    patchreg: Patchreg, make_tiny_model, tmp_path: Path, monkeypatch
) -> None:
    import core.forecast as forecast_module
    from tests.core.test_forecast import _write_fit

    pid = _family(patchreg, make_tiny_model, tmp_path)
    monkeypatch.setattr(forecast_module, "FIT_FILE", tmp_path / "fit.json")
    _write_fit(tmp_path / "fit.json")
    before = patchreg("compat", pid, "--base", "tiny:v2").stdout
    assert f"no portability statistics yet: `patchreg port {pid} --base tiny:v2 --no-eval`" in before
    assert patchreg.json("compat", pid, "--base", "tiny:v2")["forecast"] is None

    ported = patchreg.json("port", pid, "--base", "tiny:v2", "--no-eval")  # statistics only, no eval
    forecast = ported["forecast"]
    assert 0.0 <= forecast["probability"] <= 1.0 and forecast["keep_fraction"] == 0.5
    assert forecast["evidence"][0]["feature"] in forecast_module.FEATURES and ported["evaluations"] == []
    checked = patchreg.json("compat", pid, "--base", "tiny:v2")
    assert checked["forecast"] == forecast  # recorded with the pair: every later check shows it
    line = [ln for ln in patchreg("compat", pid, "--base", "tiny:v2").stdout.splitlines() if "forecast" in ln]
    assert line and "chance to be validated by a gate keeping 50% of the source's gain" in line[0]
