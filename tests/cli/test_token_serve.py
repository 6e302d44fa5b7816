"""`patchreg token` and `patchreg serve`: tokens from the command line, and a real server process."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.errors import Unauthorized
from registry.db import make_engine, session_factory, transaction
from registry.services import tokens
from tests.cli.conftest import Patchreg
from tests.factories import write_patch

ROOT = Path(__file__).resolve().parents[2]


def test_token_create_list_revoke(patchreg: Patchreg, db_url: str) -> None:
    patchreg("db", "upgrade")
    human = patchreg("token", "create", "ci", "--scopes", "read,write").stdout
    secret = human.strip().splitlines()[-1]
    assert "shown only now" in human and secret.startswith("prt_")
    made = patchreg.json("token", "create", "ops", "--scopes", "admin")
    assert made["token"]["scopes"] == ["admin"] and made["secret"].startswith("prt_")

    listed = patchreg.json("token", "list")
    assert [(t["name"], t["scopes"]) for t in listed] == [("ci", ["read", "write"]), ("ops", ["admin"])]
    table = patchreg("token", "list").stdout
    assert "read,write" in table and secret not in table and made["secret"] not in table

    engine = make_engine(db_url)
    with transaction(session_factory(engine)) as s:
        assert tokens.authenticate(s, secret).name == "ci"
    assert patchreg("token", "revoke", "ci").stdout.strip() == "revoked token ci"
    with transaction(session_factory(engine)) as s, pytest.raises(Unauthorized):
        tokens.authenticate(s, secret)
    engine.dispose()
    again = patchreg("token", "revoke", "ci", ok=False)
    assert again.exit_code == 1 and "already revoked" in again.stderr
    bad = patchreg("token", "create", "x", "--scopes", "read,root", ok=False)
    assert bad.exit_code == 1 and "unknown scope 'root'" in bad.stderr


def test_serve_refuses_an_uninitialised_database(tmp_path: Path) -> None:
    result = Patchreg(tmp_path / "home", None)("serve", "--port", "1", ok=False)
    assert result.exit_code == 1
    assert "no registry database" in result.stderr and "db upgrade" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(patchreg: Patchreg, db_url: str, tmp_path: Path) -> Iterator[tuple[str, Patchreg]]:
    """`patchreg serve` as a real process on a free port, stopped after the test."""
    patchreg("db", "upgrade")
    port = _free_port()
    cmd = [sys.executable, "-m", "cli.main", "--home", str(patchreg.home), "--db", db_url]
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*cmd, "serve", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become healthy in 30 s:\n" + log.read_text()
            time.sleep(0.1)
        yield url, patchreg
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_a_real_server_takes_an_upload_and_serves_a_range(
    server: tuple[str, Patchreg], make_tiny_model, tmp_path: Path
) -> None:
    url, patchreg = server
    patchreg("base", "register", "tiny:v1", str(make_tiny_model(seed=0)))
    patchreg("domain", "create", "medical")
    secret = patchreg.json("token", "create", "uploader", "--scopes", "write")["secret"]
    auth = {"Authorization": f"Bearer {secret}"}
    file = write_patch(tmp_path / "medical.safetensors")
    data = file.read_bytes()

    with httpx.Client(base_url=url, headers=auth, timeout=30) as client:
        with open(file, "rb") as f:
            response = client.post(
                "/v1/patches", data={"domain": "medical", "base": "tiny:v1"}, files={"patch": f}
            )
        assert response.status_code == 201, response.text
        patch = response.json()
        assert patch["digest"] == hashlib.sha256(data).hexdigest()

        ranged = client.get(f"/v1/patches/{patch['id']}/download", headers={"Range": "bytes=100-299"})
        assert ranged.status_code == 206 and ranged.content == data[100:300]
        assert ranged.headers["ETag"] == f'"{patch["digest"]}"'
        assert ranged.headers["Content-Range"] == f"bytes 100-299/{len(data)}"
        events = client.get("/v1/audit", params={"subject": patch["id"]}).json()
        assert [(e["action"], e["actor"]) for e in events] == [("patch.imported", "token:uploader")]
    assert httpx.get(f"{url}/v1/patches").status_code == 401
