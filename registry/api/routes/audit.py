"""The audit log, newest first."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from registry.api.auth import Reader
from registry.api.paging import DEFAULT_LIMIT, Cursor, Limit, paged
from registry.schemas import AuditEventRead
from registry.services import audit

router = APIRouter(tags=["audit"])


@router.get("/audit")
def list_events(
    ctx: Reader,
    request: Request,
    response: Response,
    subject: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> list[AuditEventRead]:
    """Newest first, one subject's trail with `subject`; one page (`Link`/`X-Next-Cursor` when more
    follow)."""
    with ctx.transaction() as s:
        page = audit.page_events(s, subject, limit=limit, cursor=cursor)
    return paged(request, response, page, limit)
