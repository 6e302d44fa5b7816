"""kill -9 of a real `patchreg serve` in the middle of an upload leaves its spool only in the store's
own temp space (never TMPDIR), and the next start sweeps it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from registry.db import transaction
from registry.services import tokens
from tests.conftest import Registry

ROOT = Path(__file__).resolve().parents[3]
BOUNDARY = b"crashtestboundary"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _server(
    registry: Registry, env: dict[str, str], log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = _free_port()
    cmd = [sys.executable, "-m", "cli.main", "--home", str(registry.home), "--db", registry.url]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*cmd, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become healthy in 30 s:\n" + log.read_text()
            time.sleep(0.1)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=15)


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def test_kill_9_during_an_upload_leaves_nothing_after_the_next_start(
    registry: Registry, tmp_path: Path
) -> None:
    with transaction(registry.factory, "test") as s:
        _, secret = tokens.create(s, "uploader", "write")
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(system_tmp), "PATCHREG_TEMP_AGE_GUARD_SECONDS": "1"}
    scratch = registry.home / "artifacts" / "tmp"
    log = tmp_path / "server.log"

    with _server(registry, env, log) as (proc, port):
        head = (
            b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="domain"\r\n\r\nmedical\r\n'
            b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="base"\r\n\r\ntiny:v1\r\n'
            b"--"
            + BOUNDARY
            + b'\r\nContent-Disposition: form-data; name="patch"; filename="p.safetensors"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n"
        )
        request = (
            f"POST /v1/patches HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {secret}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY.decode()}\r\n"
            f"Content-Length: {len(head) + (64 << 20)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(request + head)
            deadline = time.monotonic() + 30
            while not any(any(d.rglob("p.safetensors")) for d in (scratch, system_tmp)):  # spooling
                assert time.monotonic() < deadline, "the upload never reached the spool:\n" + log.read_text()
                conn.sendall(b"\0" * (64 << 10))
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)

    left = _files(scratch)
    assert left and all(name.startswith("spool-") for name in left), left
    assert _files(system_tmp) == []  # nothing of the upload went to TMPDIR
    (scratch / "upload-partial").write_bytes(b"half a blob")  # as a killed blob write leaves it
    time.sleep(1.5)  # past the age guard

    with _server(registry, env, log):
        assert _files(scratch) == [], log.read_text()
    assert _files(system_tmp) == []
