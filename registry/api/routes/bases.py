"""Base model versions: list, show, register from a server-side directory, hf:// or s3://."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from core.errors import Forbidden
from registry.api.auth import Reader, Writer
from registry.api.paging import DEFAULT_LIMIT, Cursor, Limit, paged
from registry.schemas import BaseVersionDetail, BaseVersionRead
from registry.services import bases
from registry.sources import HF_PREFIX, S3_PREFIX

router = APIRouter(tags=["bases"])


class BaseRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ref: str = Field(description="FAMILY:VERSION, e.g. llama3:3.1")
    source: str = Field(
        description="A model directory on the server, hf://ORG/NAME[@REVISION] or s3://BUCKET/PATH"
    )
    parent: str | None = Field(default=None, description="The version this one evolved from")


@router.get("/bases")
def list_bases(
    ctx: Reader,
    request: Request,
    response: Response,
    family: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> list[BaseVersionRead]:
    """By family, oldest version first; one page (`Link`/`X-Next-Cursor` when more follow)."""
    with ctx.transaction() as s:
        page = bases.page_bases(s, family, limit=limit, cursor=cursor)
    return paged(request, response, page, limit)


@router.get("/bases/{ref}")
def show_base(ref: str, ctx: Reader) -> BaseVersionDetail:
    with ctx.transaction() as s:
        return bases.show_base(s, ref)


@router.post("/bases", status_code=201)
def register_base(body: BaseRegistration, ctx: Writer) -> BaseVersionRead:
    """Fingerprint the model (weights are hashed in a stream, never loaded) and record it; a version
    with a parent also gets its `port_all` job in the same transaction.

    A source on the server's disk needs an admin token: the answer would otherwise tell any write
    token which server paths exist. `hf://` and `s3://` sources need write."""
    if not body.source.startswith((HF_PREFIX, S3_PREFIX)) and not ctx.caller.grants("admin"):
        raise Forbidden(
            "registering a base from a path on the server needs a token with the 'admin' scope "
            "(a 'write' token may register hf://ORG/NAME and s3://BUCKET/PATH sources)"
        )
    with ctx.transaction() as s:
        return bases.register_base(s, body.ref, body.source, parent=body.parent)
