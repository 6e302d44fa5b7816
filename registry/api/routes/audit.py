"""The audit log, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from registry.api.auth import Reader
from registry.schemas import AuditEventRead
from registry.services import audit

router = APIRouter(tags=["audit"])


@router.get("/audit")
def list_events(
    ctx: Reader, limit: Annotated[int, Query(ge=1, le=10_000)] = 50, subject: str | None = None
) -> list[AuditEventRead]:
    with ctx.transaction() as s:
        return audit.list_events(s, limit, subject)
