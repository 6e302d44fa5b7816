"""The append-only audit log: every write records who did what to which subject."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry import pagination
from registry.models import AuditEvent
from registry.pagination import Page
from registry.schemas import AuditEventRead


def record(session: Session, action: str, subject: str, **detail: Any) -> None:
    actor = str(session.info.get("actor", "unknown"))
    session.add(AuditEvent(actor=actor, action=action, subject=subject, detail=detail))


def page_events(
    session: Session, subject: str | None = None, *, limit: int | None = None, cursor: str | None = None
) -> Page[AuditEventRead]:
    """Newest first (ids grow with time); `subject` filters by ix_audit_subject."""
    stmt = select(AuditEvent)
    if subject is not None:
        stmt = stmt.where(AuditEvent.subject == subject)
    page = pagination.keyset(
        session, stmt, (AuditEvent.id,), lambda e: (e.id,), limit=limit, cursor=cursor, descending=True
    )
    return Page([AuditEventRead.model_validate(e) for e in page.items], page.next_cursor)


def list_events(session: Session, limit: int = 50, subject: str | None = None) -> list[AuditEventRead]:
    """The newest `limit` events (internal callers; users get `page_events`)."""
    return page_events(session, subject, limit=limit).items
