"""Shared fixtures: real SQLite and real PostgreSQL databases, an artifact store, tiny models.

PostgreSQL comes from PATCHREG_TEST_POSTGRES_URL (default: the local server's `test` database);
the suite creates its own database there and drops it at the end. If PostgreSQL cannot be
reached the PostgreSQL tests fail: they never skip silently.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from registry import migrate
from registry.db import make_engine, session_factory
from registry.store import LocalStore
from tests.s3_server import s3_endpoint, s3_env

__all__ = ["s3_endpoint", "s3_env"]  # fixtures for every test package

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", "postgresql"]


def _pg_admin_url() -> str:
    return os.environ.get("PATCHREG_TEST_POSTGRES_URL", DEFAULT_PG)


def create_pg_database() -> str:
    admin_url = make_url(_pg_admin_url())
    name = f"patchreg_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception as exc:  # fail loudly: the suite must run on PostgreSQL for real
        pytest.fail(f"PostgreSQL at {admin_url.render_as_string()} is not reachable: {exc}", pytrace=False)
    return admin_url.set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    admin = create_engine(make_url(_pg_admin_url()), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database for this test session, at the current schema."""
    url = create_pg_database()
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield url
    drop_pg_database(url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied per test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "registry.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def _truncate_all(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        tables = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
        if tables:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty registry at the current schema, on each backend in turn."""
    if request.param == "sqlite":
        path = tmp_path / "registry.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_url")
        yield url
        _truncate_all(url)


@dataclass
class Registry:
    """What a test needs to call services the way an entry point does."""

    url: str
    engine: Engine
    factory: sessionmaker[Session]
    store: LocalStore
    home: Path


@pytest.fixture
def registry(db_url: str, tmp_path: Path) -> Iterator[Registry]:
    engine = make_engine(db_url)
    home = tmp_path / "home"
    home.mkdir()
    yield Registry(db_url, engine, session_factory(engine), LocalStore(home / "artifacts"), home)
    engine.dispose()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-v1")


@pytest.fixture(scope="session")
def make_tiny_model(tmp_path_factory: pytest.TempPathFactory):
    """Build (once per session) a tiny model directory for a TinyConfig's fields and a seed."""
    from trainer.tiny import TinyConfig, save_tiny_model

    cache: dict[tuple, Path] = {}

    def build(seed: int = 0, **fields: object) -> Path:
        key = (seed, tuple(sorted(fields.items())))
        if key not in cache:
            cache[key] = save_tiny_model(tmp_path_factory.mktemp("model"), TinyConfig(**fields), seed=seed)
        return cache[key]

    return build


@pytest.fixture(scope="session")
def make_zoo_model(tmp_path_factory: pytest.TempPathFactory):
    """Build (once per session) a tiny model of a catalog architecture (`trainer.zoo`) for a seed."""
    from trainer import zoo

    cache: dict[tuple[str, int], Path] = {}

    def build(model_type: str, seed: int = 0) -> Path:
        key = (model_type, seed)
        if key not in cache:
            cache[key] = zoo.save(model_type, tmp_path_factory.mktemp(f"zoo-{model_type}-{seed}"), seed=seed)
        return cache[key]

    return build


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests run on a machine with CUDA (the lent GPU machine) and are deselected elsewhere:
    `make test` passes without a GPU, and never reports a GPU check it did not run as passed."""
    import torch

    if torch.cuda.is_available():
        return
    gpu = [item for item in items if item.get_closest_marker("gpu") is not None]
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if item.get_closest_marker("gpu") is None]
