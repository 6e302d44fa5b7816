"""A registry that `patchreg demo --quick` populated (built once per session), one token per role,
and the app that `patchreg serve` runs on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from cli.main import cli
from registry.api.app import create_app
from registry.config import Settings
from registry.db import make_engine, session_factory, transaction
from registry.services import tokens
from registry.web.session import COOKIE

ROLES = {"read": "read", "write": "read,write", "admin": "admin"}


@dataclass(frozen=True)
class DemoRegistry:
    home: Path
    secrets: dict[str, str]

    @property
    def url(self) -> str:
        return f"sqlite:///{self.home / 'registry.db'}"


@pytest.fixture(scope="session")
def demo_registry(tmp_path_factory: pytest.TempPathFactory) -> DemoRegistry:
    home = tmp_path_factory.mktemp("web-demo")
    result = CliRunner().invoke(cli, ["--home", str(home), "demo", "--quick"], catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr
    engine = make_engine(f"sqlite:///{home / 'registry.db'}")
    with transaction(session_factory(engine)) as s:
        s.info["actor"] = "test"
        secrets = {role: tokens.create(s, role, scopes)[1] for role, scopes in ROLES.items()}
    engine.dispose()
    return DemoRegistry(home, secrets)


@pytest.fixture
def web(demo_registry: DemoRegistry) -> Iterator[TestClient]:
    """The app on the demo registry, not logged in (give a cookie with `as_`)."""
    app = create_app(Settings(home=demo_registry.home))
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        yield client


def as_(client: TestClient, demo_registry: DemoRegistry, role: str) -> TestClient:
    client.cookies.set(COOKIE, demo_registry.secrets[role])
    return client
