"""The command line as a user meets it, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from registry.db import make_engine
from tests.cli.conftest import Patchreg
from tests.helpers import NothingWritten


def test_register_a_saved_model_and_read_its_fingerprints(patchreg: Patchreg, make_tiny_model) -> None:
    v1, v2 = make_tiny_model(seed=0), make_tiny_model(seed=1)
    assert "registered tiny:v1" in patchreg("base", "register", "tiny:v1", str(v1)).stdout
    patchreg("base", "register", "tiny:v2", str(v2), "--parent", "tiny:v1")

    shown = patchreg.json("base", "show", "tiny:v1")
    assert shown["ref"] == "tiny:v1" and shown["model_type"] == "llama"
    assert len(shown["arch_fingerprint"]) == 64 and len(shown["weights_digest"]) == 64
    assert ["model.norm.weight", [64], "F32"] in shown["tensor_table"]
    assert patchreg.json("--json", "base", "show", "tiny:v2")["parent"] == "tiny:v1"  # global flag too

    listing = patchreg("base", "list").stdout.splitlines()
    assert listing[0].split()[:3] == ["BASE", "PARENT", "TYPE"]
    assert [line.split()[0] for line in listing[1:]] == ["tiny:v1", "tiny:v2"]
    assert "139,584" in listing[1]
    assert [b["ref"] for b in patchreg.json("base", "list", "--family", "tiny")] == ["tiny:v1", "tiny:v2"]
    assert "model.layers.0.mlp.down_proj.weight" in patchreg("base", "show", "tiny:v1", "--tensors").stdout


def test_domains_datasets_and_audit(patchreg: Patchreg, tmp_path: Path) -> None:
    data = tmp_path / "notes.jsonl"
    data.write_text('{"text": "a"}\n{"prompt": "b", "completion": "c"}\n')
    patchreg("domain", "create", "medical", "--description", "clinical notes")
    out = patchreg(
        "dataset", "add", "medical", "notes", str(data), "--role", "train", "--available-until", "2999-01-01"
    )
    assert "2 rows" in out.stdout
    assert patchreg.json("domain", "list")[0]["description"] == "clinical notes"
    (row,) = patchreg.json("dataset", "list", "--domain", "medical")
    assert (row["rows"], row["available_until"], row["available"]) == (2, "2999-01-01", True)
    events = patchreg.json("audit", "--limit", "5")
    assert [e["action"] for e in events] == ["dataset.add", "domain.create"]
    digest = events[0]["detail"]["digest"]
    human = patchreg("audit").stdout
    assert f"digest={digest[:12]}," in human and digest not in human  # shortened for people, whole in JSON


def test_user_errors_are_one_line_exit_1_and_write_nothing(
    patchreg: Patchreg, db_url: str, make_tiny_model, tmp_path: Path
) -> None:
    model = make_tiny_model()
    patchreg("base", "register", "tiny:v1", str(model))
    patchreg("domain", "create", "medical")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 3}\n')
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (truncated / name).write_bytes((model / name).read_bytes())
    (truncated / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes()[:4096])
    cases = [
        (["base", "register", "tiny:v1", str(model)], "tiny:v1 is already registered"),
        (["base", "register", "tiny:v2", str(tmp_path)], "no config.json"),
        (["base", "register", "tiny:v2", str(truncated)], "beyond the data"),
        (["base", "register", "tiny:v2", str(model), "--parent", "tiny:v9"], "no base version tiny:v9"),
        (["base", "show", "tiny:v7"], "no base version tiny:v7"),
        (
            ["dataset", "add", "medical", "bad", str(bad), "--role", "train"],
            "bad.jsonl line 2: 'text' must be",
        ),
        (["dataset", "add", "nowhere", "bad", str(bad), "--role", "train"], "no domain named 'nowhere'"),
    ]
    engine = make_engine(db_url)
    for args, message in cases:
        with NothingWritten(engine, patchreg.home / "artifacts"):
            result = patchreg(*args, ok=False)
        assert result.exit_code == 1, args
        assert result.stderr.strip() == result.stderr.strip().splitlines()[0]  # exactly one line
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
        assert "Traceback" not in result.output
    engine.dispose()


def test_usage_errors_exit_2(patchreg: Patchreg) -> None:
    assert patchreg("base", "register", ok=False).exit_code == 2
    assert patchreg("dataset", "add", "d", "n", "f", "--role", "nonsense", ok=False).exit_code == 2
    assert (
        patchreg(
            "dataset", "add", "d", "n", "f", "--role", "eval", "--available-until", "soon", ok=False
        ).exit_code
        == 2
    )


def test_data_commands_refuse_an_uninitialised_database(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    run = Patchreg(home, None)
    result = run("base", "list", ok=False)
    assert result.exit_code == 1
    assert f"run `patchreg --home {home} db upgrade`" in result.stderr
    assert not (home / "registry.db").exists()  # the check itself writes nothing
    assert run.json("db", "current")["current"] is None
    assert "upgraded" in run("db", "upgrade").stdout
    assert run.json("db", "current")["up_to_date"] is True
    assert "up to date" in run("db", "upgrade").stdout
    assert run.json("base", "list") == []


def test_data_commands_refuse_an_old_schema(patchreg: Patchreg, db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0000'")
    try:
        result = patchreg("domain", "list", ok=False)
        assert result.exit_code == 1
        assert "schema is at revision 0000" in result.stderr
        assert f"--db {db_url} db upgrade`" in result.stderr
    finally:
        from registry import migrate

        with engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{migrate.head_revision()}'")
        engine.dispose()


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys; from cli.main import cli\n"
        "try:\n    cli.main(['--help'], prog_name='patchreg')\nexcept SystemExit: pass\n"
        "for name in ('base', 'dataset', 'db'):\n"
        "    try:\n        cli.main([name, '--help'], prog_name='patchreg')\n    except SystemExit: pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'fastapi') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_database_url_from_the_environment(
    db_url: str, tmp_path: Path, make_tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATCHREG_DATABASE_URL", db_url)
    monkeypatch.setenv("PATCHREG_STORE", str(tmp_path / "blobs"))
    monkeypatch.setenv("PATCHREG_ACTOR", "ci-bot")
    run = Patchreg(tmp_path / "unused-home", None)
    run("base", "register", "tiny:v1", str(make_tiny_model()))
    assert run.json("base", "list")[0]["ref"] == "tiny:v1"
    assert run.json("audit")[0]["actor"] == "ci-bot"
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "x"}\n')
    run("domain", "create", "d")
    run("dataset", "add", "d", "n", str(data), "--role", "general")
    assert any((tmp_path / "blobs" / "sha256").rglob("*"))
    assert not (tmp_path / "unused-home" / "registry.db").exists()


def _modules_after(*args: str) -> set[str]:
    """The top-level modules a fresh `patchreg ARGS` process has imported when it is done."""
    code = (
        "import sys\nfrom cli.main import cli\n"
        f"try:\n    cli.main({list(args)!r}, prog_name='patchreg')\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_commands_import_only_what_they_use(tmp_path: Path) -> None:
    """Each command's module loads when it runs (`cli.main.COMMANDS`), so a start costs what the
    command needs: `--version` nothing but click; a local read no client, web, numpy or ML."""
    version = _modules_after("--version")
    assert not version & {"sqlalchemy", "pydantic", "httpx", "numpy", "registry", "torch", "fastapi"}
    _modules_after("--home", str(tmp_path), "db", "upgrade")
    lineage = _modules_after("--home", str(tmp_path), "lineage", "abcd")  # through the schema check
    assert "sqlalchemy" in lineage  # it did reach the database
    assert not lineage & {"httpx", "client", "numpy", "torch", "transformers", "peft", "fastapi", "alembic"}
