"""Concurrent writers of the same key: what a lost race means, decided here once.

Two requests that create the same thing both pass their "is it there yet?" check, and the
database's unique constraint picks the winner. There are two kinds of such rows:

- **Identities** (a domain, a dataset name, a token, a base version…): the loser has nothing to
  keep, so its whole transaction is rolled back and `transaction()` (registry/db.py) reports the
  unique violation through `as_patchreg_error` as the same `AlreadyExists` (409) its service raises
  when the row was there before it looked.
- **Shared rows** (a blob's artifact row, a base family, a verdict, a ported copy): every writer
  wants the same outcome, so services write them with `insert_or_ignore`, which never fails on
  the key, then read the row (locked, where they go on to update it). No SAVEPOINT is needed: on
  PostgreSQL a failed statement would abort the whole transaction, and pysqlite's implicit
  transactions make SAVEPOINTs unsafe.

On SQLite every write waits for the single writer lock (busy timeout); one that still finds the
database locked is reported as `DatabaseUnavailable` (503, retryable) rather than a 500.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from core.errors import AlreadyExists, DatabaseUnavailable, PatchregError

# What a table's unique key names, for the loser of a race ("<this> already exists").
SUBJECTS = {
    "aliases": "this alias",
    "api_tokens": "a token of this name",
    "base_families": "this base family",
    "base_versions": "this base version",
    "datasets": "a dataset of this name in this domain",
    "domains": "a domain of this name",
    "importance_maps": "an importance map for this base and dataset",
    "jobs": "a job with this dedupe key",
    "patches": "a ported copy of this patch on this base",
}
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (\w+)\.")
_PG_UNIQUE = "23505"


def unique_violation_table(exc: BaseException) -> str | None:
    """The table whose unique key `exc` violated, or None when `exc` is no unique violation."""
    if not isinstance(exc, IntegrityError):
        return None
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == _PG_UNIQUE:  # psycopg
        diag = getattr(orig, "diag", None)
        return str(getattr(diag, "table_name", None) or "")
    found = _SQLITE_UNIQUE.search(str(orig))
    if found is not None:
        return found.group(1)
    return None


def as_patchreg_error(exc: BaseException) -> PatchregError | None:
    """The documented error a database failure stands for, or None when it stands for no known one."""
    table = unique_violation_table(exc)
    if table is not None:
        what = SUBJECTS.get(table, "this record")
        return AlreadyExists(f"{what} already exists (another request created it at the same moment)")
    if isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlite_errorname", "").startswith("SQLITE_BUSY"):
        return DatabaseUnavailable("the registry database is busy with other writes; try again")
    return None


def _insert(session: Session, table: Any) -> Any:
    return (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(table)


def _key_columns(table: Any) -> list[Any]:
    return list((table if isinstance(table, Table) else table.__table__).primary_key.columns)


def insert_or_ignore(
    session: Session,
    table: Any,
    values: dict[str, Any],
    keys: list[str],
    where: ColumnElement[bool] | None = None,
) -> bool:
    """INSERT … ON CONFLICT (keys) DO NOTHING: True when this call inserted the row.

    False means a row with the same key is committed (a concurrent writer's insert is waited
    for, on both backends), so the caller may read it in the same transaction. `where` names the
    predicate of a partial unique index. `table` is an ORM class or a Table.
    """
    stmt = _insert(session, table).values(**values)
    stmt = stmt.on_conflict_do_nothing(index_elements=keys, index_where=where)
    return session.execute(stmt.returning(*_key_columns(table))).first() is not None
