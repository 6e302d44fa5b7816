"""Domains: list and create."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict

from registry.api.auth import Reader, Writer
from registry.api.paging import DEFAULT_LIMIT, Cursor, Limit, paged
from registry.schemas import DomainRead
from registry.services import domains

router = APIRouter(tags=["domains"])


class DomainCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""


@router.get("/domains")
def list_domains(
    ctx: Reader, request: Request, response: Response, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> list[DomainRead]:
    """By name; one page (`Link`/`X-Next-Cursor` when more follow)."""
    with ctx.transaction() as s:
        page = domains.page_domains(s, limit=limit, cursor=cursor)
    return paged(request, response, page, limit)


@router.post("/domains", status_code=201)
def create_domain(body: DomainCreate, ctx: Writer) -> DomainRead:
    with ctx.transaction() as s:
        return domains.create_domain(s, body.name, body.description)
