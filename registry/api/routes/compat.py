"""Compatibility: a patch against a base version, how engines serve it, a family's matrix, and
queuing a port."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from core.serving import MAX_RANK
from registry.api.auth import Reader, Writer
from registry.api.paging import DEFAULT_LIMIT, Cursor, Limit, link_next
from registry.schemas import CompatMatrix, JobRead, ServingRead, VerdictRead
from registry.services import compat, matrix, port_sources, serving

router = APIRouter(tags=["compatibility"])


class PortRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base: str = Field(description="FAMILY:VERSION to port the patch onto")


@router.get("/patches/{patch_id}/compat")
def check_compat(patch_id: str, base: str, ctx: Reader) -> VerdictRead:
    """The verdict and every reason, from fingerprints alone, computed on each call and never
    stored: a read writes no row and no audit event, whatever the token's scope. `POST` records it."""
    with ctx.transaction() as s:
        return compat.assess(s, ctx.store, patch_id, base)


@router.post("/patches/{patch_id}/compat")
def record_compat(patch_id: str, base: str, ctx: Writer) -> VerdictRead:
    """Check as `GET` does and record the verdict (what `patchreg compat` does), so the matrix and
    `resolve` know it; the audit log gets an entry when the verdict is new or has changed."""
    with ctx.transaction() as s:
        return compat.check_compat(s, ctx.store, patch_id, base)


@router.get("/families/{family}/matrix")
def family_matrix(
    family: str,
    ctx: Reader,
    request: Request,
    response: Response,
    domain: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> CompatMatrix:
    """One page of rows (source patches by domain, then age). When more follow, `next_cursor` in
    the body, `Link: <…>; rel="next"` and `X-Next-Cursor` say where the next page starts."""
    with ctx.transaction() as s:
        table = matrix.compat_matrix(s, family, domain, limit=limit, cursor=cursor)
    link_next(request, response, table.next_cursor, limit)
    return table


@router.post("/patches/{patch_id}/port", status_code=201, responses={200: {"description": "Already queued"}})
def enqueue_port(patch_id: str, body: PortRequest, response: Response, ctx: Writer) -> JobRead:
    """Queue a `port` job for a worker: 201 when queued now, 200 with the job already queued."""
    with ctx.transaction() as s:
        job, created = port_sources.enqueue_port(s, patch_id, body.base)
    response.status_code = 201 if created else 200
    return job


@router.get("/patches/{patch_id}/serving")
def serving_report(
    patch_id: str,
    base: str,
    ctx: Reader,
    approximate: Annotated[int | None, Query(ge=1, le=MAX_RANK)] = None,
) -> list[ServingRead]:
    """How PEFT and each serving engine load the patch on `base` (one answer per export target),
    from the patch's header and the base's tensor table: what `compat --serving` and
    `fetch --dry-run` print. A read: nothing is recorded."""
    with ctx.transaction() as s:
        return serving.serving_report(s, ctx.store, patch_id, base, approximate)
