"""Aliases (e.g. `production`): list, set, delete."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict

from registry.api.auth import Reader, Writer
from registry.api.paging import DEFAULT_LIMIT, Cursor, Limit, paged
from registry.schemas import AliasRead
from registry.services import aliases

router = APIRouter(tags=["aliases"])
PATH = "/aliases/{domain}/{base}/{name}"


class AliasTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patch_id: str


@router.get("/aliases")
def list_aliases(
    ctx: Reader,
    request: Request,
    response: Response,
    domain: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> list[AliasRead]:
    """By domain and name; one page (`Link`/`X-Next-Cursor` when more follow)."""
    with ctx.transaction() as s:
        page = aliases.page_aliases(s, domain, limit=limit, cursor=cursor)
    return paged(request, response, page, limit)


@router.put(PATH)
def set_alias(domain: str, base: str, name: str, body: AliasTarget, ctx: Writer) -> AliasRead:
    """Point NAME at a patch for DOMAIN on BASE (FAMILY:VERSION).

    For example `PUT /v1/aliases/medical/llama3:3.1/production` with `{"patch_id": "3f2a9c"}`.
    """
    with ctx.transaction() as s:
        return aliases.set_alias(s, domain, base, name, body.patch_id)


@router.delete(PATH, status_code=204, response_class=Response)
def delete_alias(domain: str, base: str, name: str, ctx: Writer) -> Response:
    with ctx.transaction() as s:
        aliases.delete_alias(s, domain, base, name)
    return Response(status_code=204)
