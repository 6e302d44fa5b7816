"""Schema migrations and the guard that keeps every entry point on the current schema.

Alembic is imported lazily: only `db` commands and tests need it. The guard every command runs is
one query (`SELECT version_num FROM alembic_version`) against `HEAD`, the newest migration's id,
which `tests/registry/test_migrations.py` checks against alembic's own view of the chain.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from core.errors import SchemaOutOfDate

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
HEAD = "0007"  # the newest migration's revision: bump it with every new migration


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations must form one linear chain, found heads {heads}")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    _run(engine, lambda cfg: command.upgrade(cfg, revision))


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    _run(engine, lambda cfg: command.downgrade(cfg, revision))


def _run(engine: Engine, step: Callable[[Config], None]) -> None:
    """One migration run in one transaction. On SQLite, with foreign keys off while it runs:
    changing a constraint rebuilds the table, and dropping the old copy of a table that other
    tables reference would otherwise fail (SQLite's documented procedure for ALTER TABLE); every
    reference is checked before they are turned back on."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # outside any transaction, or SQLite ignores it
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                step(cfg)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        first = broken[0]
                        raise RuntimeError(f"the migration broke {len(broken)} references, e.g. {first}")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def check_drift(engine: Engine) -> None:
    """Raise if the models would autogenerate operations the migrations lack (`alembic check`)."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.check(cfg)


def stamped_revision(engine: Engine) -> str | None:
    """The revision the database is at, in one query and without alembic (None: not initialised)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def ensure_current(engine: Engine, fix_command: str = "patchreg db upgrade") -> None:
    """Refuse to work on a schema other than head, naming the exact command that fixes it."""
    current, head = stamped_revision(engine), HEAD
    if current == head:
        return
    if current is None:
        raise SchemaOutOfDate(f"database is not initialised; run `{fix_command}`")
    raise SchemaOutOfDate(
        f"database schema is at revision {current} but this patchreg needs {head}; run `{fix_command}`"
    )
