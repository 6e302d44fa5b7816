"""Assertions shared by tests: above all, that a refused operation wrote nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, inspect, select, table


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        names = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
        return {n: conn.scalar(select(func.count()).select_from(table(n))) or 0 for n in names}


def blob_files(store_root: Path) -> set[str]:
    """Every file under the store, temp files included: nothing may be left half-written."""
    if not store_root.exists():
        return set()
    return {str(p.relative_to(store_root)) for p in store_root.rglob("*") if p.is_file()}


class NothingWritten:
    """`with NothingWritten(engine, store_root): ...` fails if a row or a blob appeared."""

    def __init__(self, engine: Engine, store_root: Path) -> None:
        self.engine, self.store_root = engine, store_root

    def __enter__(self) -> NothingWritten:
        self.rows, self.blobs = row_counts(self.engine), blob_files(self.store_root)
        return self

    def __exit__(self, *exc: object) -> None:
        assert row_counts(self.engine) == self.rows, "rows were written"
        assert blob_files(self.store_root) == self.blobs, "blobs were written"


def show_job(registry: Any, job_id: str) -> Any:
    """The job as the registry has it now (a `JobRead`), in a transaction of its own."""
    from registry.db import transaction
    from registry.services import jobs

    with transaction(registry.factory) as s:
        return jobs.show_job(s, job_id)
