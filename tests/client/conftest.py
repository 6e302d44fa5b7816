"""A real `patchreg serve` process on 127.0.0.1 per database backend, for the client's tests.

One server per backend for the session (starting one costs seconds on shared cores), on a
database of its own: tests share it, so each names its domains and tokens with `uid`. The server
is seeded with tiny:v1, tiny:v2 (same shapes, parent v1) and tiny:v3 (wider), through the client.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client import Client
from registry import migrate
from registry.db import make_engine, session_factory, transaction
from registry.services import tokens
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database
from tests.servers import free_port, patchreg_serve, wait_healthy

__all__ = ["free_port", "wait_healthy"]  # imported from here by other test packages

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 60
ROLES = {"read": "read", "write": "read,write", "admin": "admin"}


@dataclass
class Server:
    url: str
    db_url: str
    home: Path
    secrets: dict[str, str]  # role -> token secret
    log: Path

    def client(self, role: str | None = "admin", **options: Any) -> Client:
        return Client(self.url, self.secrets[role] if role else None, **options)


@pytest.fixture(scope="session", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, make_tiny_model
) -> Iterator[Server]:
    home = tmp_path_factory.mktemp(f"client-{request.param}")
    db_url = f"sqlite:///{home / 'registry.db'}" if request.param == "sqlite" else create_pg_database()
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    with transaction(session_factory(engine)) as s:
        s.info["actor"] = "test"
        secrets = {role: tokens.create(s, role, scopes.split(","))[1] for role, scopes in ROLES.items()}
    engine.dispose()

    log = home / "server.log"
    try:
        with patchreg_serve(log, "--home", str(home), "--db", db_url) as url:
            srv = Server(url, db_url, home, secrets, log)
            with srv.client() as c:
                c.register_base("tiny:v1", str(make_tiny_model(seed=0)))
                c.register_base("tiny:v2", str(make_tiny_model(seed=1)), parent="tiny:v1")
                c.register_base("tiny:v3", str(make_tiny_model(seed=0, hidden_size=96)))
            yield srv
    finally:
        if request.param != "sqlite":
            drop_pg_database(db_url)


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    """An admin client (admin implies write and read)."""
    with server.client() as c:
        yield c


@pytest.fixture
def uid() -> str:
    """A short unique suffix: tests share their backend's server."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def domain(client: Client, uid: str) -> str:
    return client.create_domain(f"med{uid}", "a test domain").name


@pytest.fixture(scope="session")
def patch_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real patch for the tiny shapes (lowrank, columns and scale modules)."""
    from tests.factories import write_patch

    return write_patch(tmp_path_factory.mktemp("patch") / "medical.safetensors")


@pytest.fixture(scope="session")
def peft_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PEFT LoRA adapter on q_proj that fits tiny:v1 (hidden size 64)."""
    import torch

    from trainer.patch.peft_export import export_peft
    from trainer.patch.types import LowRank
    from trainer.patch.types import Patch as PatchFile

    g = torch.Generator().manual_seed(64)
    delta = LowRank(torch.randn(2, 64, generator=g), torch.randn(64, 2, generator=g), 1.0)
    patch = PatchFile("lora", {"r": 2}, {"model.layers.0.self_attn.q_proj": delta})
    return export_peft(patch, tmp_path_factory.mktemp("peft") / "adapter", "tiny")
