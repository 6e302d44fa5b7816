"""An API client on the test registry (both backends), with one token per scope.

`api.get(path)` sends the read token, `api.post/put/delete` the write token; pass `as_=` a role
("read", "write", "admin"), a raw secret, or None (no Authorization header) to choose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from registry.api.app import create_app
from registry.config import Settings
from registry.db import transaction
from registry.services import tokens
from tests.conftest import Registry
from tests.factories import write_patch

ROLES = {"read": "read", "write": "read,write", "admin": "admin"}
DEFAULT_ROLE = {"GET": "read", "HEAD": "read"}


@dataclass
class Api:
    client: TestClient
    registry: Registry
    secrets: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, *, as_: str | None = "", **kwargs: Any) -> httpx.Response:
        role = DEFAULT_ROLE.get(method, "write") if as_ == "" else as_
        headers = dict(kwargs.pop("headers", {}))
        if role is not None:
            headers["Authorization"] = f"Bearer {self.secrets.get(role, role)}"
        return self.client.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """The JSON body of a request that must answer `status`."""
        response = self.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def upload_patch(self, file: Path, domain: str = "medical", base: str = "tiny:v1", **kw: Any) -> Any:
        with open(file, "rb") as f:
            return self.post("/v1/patches", data={"domain": domain, "base": base}, files={"patch": f}, **kw)


def settings_for(registry: Registry, **overrides: Any) -> Settings:
    return Settings(home=registry.home, database_url=registry.url, **overrides)


def make_tokens(registry: Registry) -> dict[str, str]:
    with transaction(registry.factory) as s:
        s.info["actor"] = "test"
        return {role: tokens.create(s, role, scopes)[1] for role, scopes in ROLES.items()}


@contextmanager
def serve(registry: Registry, secrets: dict[str, str] | None = None, **overrides: Any) -> Iterator[Api]:
    """An app on `registry` with these settings overrides, run (lifespan included) for the block."""
    with TestClient(create_app(settings_for(registry, **overrides))) as client:
        yield Api(client, registry, secrets or {})


@pytest.fixture
def api(registry: Registry) -> Iterator[Api]:
    with serve(registry, make_tokens(registry)) as api:
        yield api


@pytest.fixture
def seeded(api: Api, make_tiny_model) -> Api:
    """tiny:v1, tiny:v2 (same shapes, parent v1), tiny:v3 (wider), and the domain `medical`
    (bases from server paths need the admin token)."""
    api.ok(
        "POST", "/v1/bases", 201, json={"ref": "tiny:v1", "source": str(make_tiny_model(seed=0))}, as_="admin"
    )
    api.ok(
        "POST",
        "/v1/bases",
        201,
        json={"ref": "tiny:v2", "source": str(make_tiny_model(seed=1)), "parent": "tiny:v1"},
        as_="admin",
    )
    api.ok(
        "POST",
        "/v1/bases",
        201,
        json={"ref": "tiny:v3", "source": str(make_tiny_model(seed=0, hidden_size=96))},
        as_="admin",
    )
    api.ok("POST", "/v1/domains", 201, json={"name": "medical"})
    return api


@pytest.fixture(scope="session")
def patch_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real patch for the default tiny shapes (lowrank, columns and scale modules)."""
    return write_patch(tmp_path_factory.mktemp("patch") / "medical.safetensors")


@pytest.fixture(scope="session")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """PEFT LoRA adapters on q_proj for hidden sizes 64 (fits tiny:v1) and 96 (does not)."""
    import torch

    from trainer.patch.peft_export import export_peft
    from trainer.patch.types import LowRank
    from trainer.patch.types import Patch as PatchFile

    out = {}
    for hidden in (64, 96):
        g = torch.Generator().manual_seed(hidden)
        delta = LowRank(torch.randn(2, hidden, generator=g), torch.randn(hidden, 2, generator=g), 1.0)
        patch = PatchFile("lora", {"r": 2}, {"model.layers.0.self_attn.q_proj": delta})
        out[hidden] = export_peft(patch, tmp_path_factory.mktemp("peft") / "adapter", "tiny")
    return out


def jsonl(*rows: dict[str, Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()
