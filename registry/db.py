"""Engine, declarative base and the transaction boundary.

Services take a session and never commit; `transaction()` is the only place that does, and the
only place that undoes: when it rolls back, blobs written during the transaction that no row
references are removed too, so a failed command leaves no row and no blob behind. It is also the
one place where a lost race (a unique violation) becomes the documented `AlreadyExists`
(`registry/conflicts.py` says why and which rows are written so that they cannot lose one).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from registry.conflicts import as_patchreg_error, insert_or_ignore

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NEW_BLOBS_KEY = "patchreg.new_blobs"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone, so we restore it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the per-backend settings patchreg relies on.

    SQLite: WAL (readers don't block the writer), foreign keys on (off by default there), a busy
    timeout so concurrent CLI commands and workers wait instead of failing at once.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session], actor: str | None = None) -> Iterator[Session]:
    """One unit of work: commit on success; on any failure roll back and drop orphaned new blobs.

    `actor` is who the audit log names for every write in it (`alice`, `token:ci`, `worker:host:1`).
    A unique violation (another transaction created the same row first) is raised as
    `AlreadyExists`, a locked SQLite database as `DatabaseUnavailable`; the original stays chained.
    """
    session = factory()
    if actor is not None:
        session.info["actor"] = actor
    try:
        yield session
        session.commit()
    except BaseException as exc:
        session.rollback()
        _discard_new_blobs(session, factory)
        known = as_patchreg_error(exc)
        if known is not None:
            raise known from exc
        raise
    finally:
        session.close()


def _discard_new_blobs(session: Session, factory: sessionmaker[Session]) -> None:
    """Delete the blobs whose artifact rows this failed transaction had inserted, unless another
    transaction has recorded the same content meanwhile.

    The check takes the row's key itself (a placeholder row, never committed), so it waits for a
    concurrent writer of the same digest to commit (then the blob is kept), or makes that writer
    wait until the blob is gone (then `artifacts.store_file` sees it missing and stores it again).
    """
    pending = session.info.pop(NEW_BLOBS_KEY, [])
    if not pending:
        return
    artifacts = Base.metadata.tables["artifacts"]  # by name: the ORM module imports this one
    with factory() as check:
        for store, digest in pending:
            placeholder = {"digest": digest, "size": 0, "media_type": ""}
            if insert_or_ignore(check, artifacts, placeholder, ["digest"]):
                store.delete(digest)
        check.rollback()
