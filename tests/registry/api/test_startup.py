"""The server refuses an out-of-date schema, and starts (and takes and serves native patches) without
torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from registry import migrate
from registry.api.app import create_app
from registry.config import Settings
from registry.db import make_engine, session_factory, transaction
from registry.services import tokens
from tests.conftest import create_pg_database, drop_pg_database

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "transformers", "peft")


@pytest.fixture(params=["sqlite, one revision behind", "postgresql, never migrated"])
def stale_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param.startswith("sqlite"):
        path = tmp_path / "registry.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
        engine = make_engine(url)
        migrate.downgrade(engine, "-1")
        engine.dispose()
        yield url
    else:
        url = create_pg_database()
        yield url
        drop_pg_database(url)


def test_off_head_schema_answers_503_until_upgraded(stale_db: str, tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path, database_url=stale_db))
    with TestClient(app) as client:
        health = client.get("/healthz")
        assert health.status_code == 503
        error = health.json()["error"]
        assert error["code"] == "schema_out_of_date" and "patchreg db upgrade" in error["message"]
        refused = client.get("/v1/domains", headers={"Authorization": "Bearer prt_anything"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "schema_out_of_date"
        assert client.post("/v1/domains", json={"name": "x"}).status_code == 503

        engine = make_engine(stale_db)
        migrate.upgrade(engine)  # the running server notices: a failed check is never cached
        with transaction(session_factory(engine)) as s:
            s.info["actor"] = "test"
            _, secret = tokens.create(s, "reader", "read")
        engine.dispose()
        assert client.get("/healthz").json() == {"status": "ok", "schema": migrate.head_revision()}
        assert client.get("/v1/domains", headers={"Authorization": f"Bearer {secret}"}).json() == []


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(home=tmp_path))) as client:
        response = client.get("/healthz")
    assert response.status_code == 503 and "no registry database" in response.json()["error"]["message"]
    assert not (tmp_path / "registry.db").exists()


def test_an_unreachable_database_answers_503(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    with TestClient(create_app(settings)) as client:
        for path in ("/healthz", "/v1/bases"):
            response = client.get(path)
            assert response.status_code == 503
            assert response.json()["error"] == {
                "code": "database_unavailable",
                "message": "the registry database cannot be reached",
            }


def test_importing_the_app_loads_no_ml_library() -> None:
    code = (
        "import sys, registry.api.app\n"
        "print(sorted(m for m in sys.modules"
        f" if m.split('.')[0] in {HEAVY!r} or m.startswith('trainer.patch')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


SERVER_WITHOUT_TORCH = """
import importlib.abc, io, json, sys, tarfile

class NoML(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {heavy!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, NoML())

from fastapi.testclient import TestClient
from registry.api.app import create_app
from registry.config import Settings
from registry.db import transaction
from registry.services import tokens

home, url, model, patch, adapter = sys.argv[1:]
app = create_app(Settings(home=home, database_url=url))
with transaction(app.state.patchreg.factory) as s:
    s.info["actor"] = "test"
    auth = {{"Authorization": "Bearer " + tokens.create(s, "w", "admin")[1]}}  # bases by path: admin
form = {{"domain": "medical", "base": "tiny:v1"}}
out = {{}}
with TestClient(app) as c:
    out["base"] = c.post("/v1/bases", json={{"ref": "tiny:v1", "source": model}}, headers=auth).status_code
    out["domain"] = c.post("/v1/domains", json={{"name": "medical"}}, headers=auth).status_code
    with open(patch, "rb") as f:
        out["native"] = c.post("/v1/patches", data=form, files={{"patch": f}}, headers=auth).status_code
    files = {{
        "adapter_model": open(adapter + "/adapter_model.safetensors", "rb"),
        "adapter_config": open(adapter + "/adapter_config.json", "rb"),
    }}
    peft = c.post("/v1/patches", data=form, files=files, headers=auth)
    out["peft"] = [peft.status_code, peft.json()["error"]["code"]]
    where = {{"domain": "medical", "base": "tiny:v1"}}
    native = c.get("/v1/fetch", params={{**where, "format": "native"}}, headers=auth)
    with tarfile.open(fileobj=io.BytesIO(native.content)) as tar:
        sent = {{m.name: tar.extractfile(m).read() for m in tar.getmembers()}}
    same = sent["patch.safetensors"] == open(patch, "rb").read()
    out["fetch_native"] = [native.status_code, sorted(sent), same]
    for fmt in ("peft", "merged"):
        refused = c.get("/v1/fetch", params={{**where, "format": fmt}}, headers=auth)
        out["fetch_" + fmt] = [refused.status_code, refused.json()["error"]["code"]]
out["ml_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print(json.dumps(out))
"""


def test_server_without_torch_takes_and_serves_native_patches(
    sqlite_template: Path, tmp_path: Path, make_tiny_model, patch_file: Path, adapters: dict[int, Path]
) -> None:
    db = tmp_path / "registry.db"
    shutil.copy(sqlite_template, db)
    args = [
        str(tmp_path),
        f"sqlite:///{db}",
        str(make_tiny_model(seed=0)),
        str(patch_file),
        str(adapters[64]),
    ]
    script = SERVER_WITHOUT_TORCH.format(heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "base": 201,
        "domain": 201,
        "native": 201,
        "peft": [501, "unsupported"],
        "fetch_native": [200, ["patch.safetensors", "patchreg.json"], True],
        "fetch_peft": [501, "unsupported"],
        "fetch_merged": [501, "unsupported"],
        "ml_loaded": [],
    }
