"""`GET /healthz`: is the database reachable and at the schema this server needs (no token)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from registry.api.deps import get_state

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Database reachable and at the head schema")
def healthz(request: Request) -> dict[str, str]:
    """200 with the schema revision; 503 (`schema_out_of_date` or `database_unavailable`) otherwise."""
    revision = get_state(request).guard.check(fresh=True)
    return {"status": "ok", "schema": revision}
