"""`patchreg serve` as the tests run it: a process of its own on a free 127.0.0.1 port, waited
for (bounded) until `/healthz` answers, stopped when the block ends."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        assert proc.poll() is None, "server exited:\n" + log.read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"no healthy server in {STARTUP_SECONDS} s:\n" + log.read_text()
        time.sleep(0.2)


@contextmanager
def patchreg_serve(
    log: Path, *global_args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> Iterator[str]:
    """`patchreg GLOBAL_ARGS serve` with this checkout on PYTHONPATH; yields its URL."""
    port = free_port()
    environment = {**(os.environ if env is None else env), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "cli.main", *global_args, "serve", "--host", "127.0.0.1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*command, "--port", str(port)], cwd=cwd, env=environment, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, log)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
