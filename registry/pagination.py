"""Pages of a list: a limit and an opaque cursor, walked by keyset (never OFFSET), so every page
costs the same however deep it is and rows written meanwhile neither repeat nor vanish.

A cursor is the last row's sort key, base64url-encoded JSON; clients pass it back untouched.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from core.errors import InvalidInput

T = TypeVar("T")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # None: this was the last page


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return limit


Key = datetime | str | int


def _part(value: Key) -> list[Any]:
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, int):
        return ["i", value]
    return ["s", value]


def _value(kind: str, raw: Any) -> Key:
    if kind == "t":
        return datetime.fromisoformat(raw)
    if kind == "i":
        if not isinstance(raw, int) or isinstance(raw, bool) or abs(raw) >= 2**63:
            raise ValueError("not a row id")
        return raw
    return str(raw)


def encode(*key: Key) -> str:
    """The cursor after a row whose sort key is `key` (strings, integers and datetimes)."""
    parts = [_part(v) for v in key]
    raw = json.dumps(parts, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, arity: int) -> list[Key]:
    """The sort key a cursor carries; InvalidInput for anything a page did not return."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
        if not isinstance(parts, list) or len(parts) != arity:
            raise ValueError("wrong length")
        return [_value(kind, v) for kind, v in parts]
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidInput(f"invalid cursor {cursor[:40]!r}: pass back the one a page returned") from None


def keyset(
    session: Session,
    stmt: Select[*tuple[Any, ...]],
    order: Sequence[ColumnElement[Any] | InstrumentedAttribute[Any]],
    key: Callable[[Any], Sequence[Key]],
    *,
    limit: int | None,
    cursor: str | None,
    descending: bool = False,
    rows: bool = False,
) -> Page[Any]:
    """One page of `stmt` walked by the unique sort key `order` (all ascending or all descending):
    the rows after `cursor`, at most `limit`, and the cursor after the last. `key` reads a row's
    sort key back; `rows` keeps whole result rows (a select of several entities) instead of scalars.
    One statement per page: it asks for one row more than the page to know whether more follow."""
    size = check_limit(limit)
    if cursor is not None:
        after = tuple_(*decode(cursor, len(order)))
        stmt = stmt.where(tuple_(*order) < after if descending else tuple_(*order) > after)
    stmt = stmt.order_by(*(c.desc() for c in order) if descending else order).limit(size + 1)
    found = list(session.execute(stmt).all() if rows else session.scalars(stmt))
    more = len(found) > size
    found = found[:size]
    return Page(found, encode(*key(found[-1])) if more else None)
