"""API tokens: bearer secrets with scopes, stored only as their sha256.

The secret is returned once, by `create`; the registry keeps its hash, so a leaked database does
not leak usable tokens. Scopes nest: `admin` implies `write`, which implies `read`. A revoked token
keeps its row (and its name) so the audit log's `token:NAME` actors stay meaningful.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import AlreadyExists, InvalidInput, InvalidState, NotFound, Unauthorized
from registry import pagination
from registry.db import utcnow
from registry.models import ApiToken
from registry.pagination import Page
from registry.schemas import TokenRead
from registry.services import audit
from registry.services.lookup import check_name

SCOPES = ("read", "write", "admin")  # each implies the ones before it
PREFIX = "prt_"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_scopes(scopes: str | list[str] | tuple[str, ...]) -> list[str]:
    """Scopes from a list or a comma-separated string, checked and in canonical order."""
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    wanted = {s.strip() for s in items if s.strip()}
    if not wanted:
        raise InvalidInput(f"a token needs at least one scope: {', '.join(SCOPES)}")
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise InvalidInput(f"unknown scope {unknown[0]!r}: expected one of {', '.join(SCOPES)}")
    return [s for s in SCOPES if s in wanted]


def grants(scopes: list[str] | tuple[str, ...], needed: str) -> bool:
    """Whether a token with `scopes` may do what `needed` allows (higher scopes imply lower ones)."""
    return any(SCOPES.index(s) >= SCOPES.index(needed) for s in scopes if s in SCOPES)


def create(session: Session, name: str, scopes: str | list[str] | tuple[str, ...]) -> tuple[TokenRead, str]:
    """A new token: (its record, the secret). The secret is never stored and cannot be shown again."""
    check_name("token name", name)
    granted = parse_scopes(scopes)
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise AlreadyExists(f"a token named {name!r} already exists (names stay taken after revocation)")
    secret = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, token_hash=hash_secret(secret), scopes=granted)
    session.add(row)
    session.flush()
    audit.record(session, "token.create", name, scopes=granted)
    return TokenRead.model_validate(row), secret


def page_tokens(session: Session, *, limit: int | None = None, cursor: str | None = None) -> Page[TokenRead]:
    """Tokens by name (revoked ones too: the audit log names them)."""
    page = pagination.keyset(
        session, select(ApiToken), (ApiToken.name,), lambda t: (t.name,), limit=limit, cursor=cursor
    )
    return Page([TokenRead.model_validate(t) for t in page.items], page.next_cursor)


def revoke(session: Session, name: str) -> TokenRead:
    row = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if row is None:
        raise NotFound(f"no token named {name!r}")
    if row.revoked_at is not None:
        raise InvalidState(f"token {name!r} was already revoked at {row.revoked_at:%Y-%m-%d %H:%M} UTC")
    row.revoked_at = utcnow()
    session.flush()
    audit.record(session, "token.revoke", name)
    return TokenRead.model_validate(row)


def authenticate(session: Session, secret: str) -> TokenRead:
    """The live token whose secret this is; Unauthorized for an unknown or revoked one."""
    digest = hash_secret(secret)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    # The lookup is by hash already; the constant-time comparison keeps the check itself leak-free.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise Unauthorized("unknown API token")
    if row.revoked_at is not None:
        raise Unauthorized(f"API token {row.name!r} has been revoked")
    return TokenRead.model_validate(row)
