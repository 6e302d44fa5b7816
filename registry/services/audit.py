"""The append-only audit log: every write records who did what to which subject."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.models import AuditEvent
from registry.schemas import AuditEventRead


def record(session: Session, action: str, subject: str, **detail: Any) -> None:
    actor = str(session.info.get("actor", "unknown"))
    session.add(AuditEvent(actor=actor, action=action, subject=subject, detail=detail))


def list_events(session: Session, limit: int = 50, subject: str | None = None) -> list[AuditEventRead]:
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if subject is not None:
        stmt = stmt.where(AuditEvent.subject == subject)
    return [AuditEventRead.model_validate(e) for e in session.scalars(stmt)]
