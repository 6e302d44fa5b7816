"""Pages of a list: a limit and an opaque cursor, walked by keyset (never OFFSET), so every page
costs the same however deep it is and rows written meanwhile neither repeat nor vanish.

A cursor is the last row's sort key, base64url-encoded JSON; clients pass it back untouched.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

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


def encode(*key: datetime | str) -> str:
    """The cursor after a row whose sort key is `key` (strings and datetimes)."""
    parts = [["t", v.isoformat()] if isinstance(v, datetime) else ["s", v] for v in key]
    raw = json.dumps(parts, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, arity: int) -> list[datetime | str]:
    """The sort key a cursor carries; InvalidInput for anything a page did not return."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
        if not isinstance(parts, list) or len(parts) != arity:
            raise ValueError("wrong length")
        return [datetime.fromisoformat(v) if kind == "t" else str(v) for kind, v in parts]
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidInput(f"invalid cursor {cursor[:40]!r}: pass back the one a page returned") from None
