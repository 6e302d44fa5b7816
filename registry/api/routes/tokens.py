"""API tokens (admin scope): list, create (the secret is in this one response only), revoke; and
`whoami` (read scope), which `patchreg login` calls to check a token before storing it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from registry.api.auth import Admin, Reader
from registry.api.paging import DEFAULT_LIMIT, Cursor, Limit, paged
from registry.schemas import Identity, TokenRead
from registry.services import tokens

router = APIRouter(tags=["tokens"])


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    scopes: list[str] = Field(description=f"Some of {', '.join(tokens.SCOPES)}")


class NewToken(BaseModel):
    token: TokenRead
    secret: str = Field(description="Shown once; the registry keeps only its sha256")


@router.get("/tokens")
def list_tokens(
    ctx: Admin, request: Request, response: Response, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> list[TokenRead]:
    """By name, revoked ones too; one page (`Link`/`X-Next-Cursor` when more follow)."""
    with ctx.transaction() as s:
        page = tokens.page_tokens(s, limit=limit, cursor=cursor)
    return paged(request, response, page, limit)


@router.post("/tokens", status_code=201)
def create_token(body: TokenCreate, ctx: Admin) -> NewToken:
    with ctx.transaction() as s:
        token, secret = tokens.create(s, body.name, body.scopes)
    return NewToken(token=token, secret=secret)


@router.delete("/tokens/{name}")
def revoke_token(name: str, ctx: Admin) -> TokenRead:
    with ctx.transaction() as s:
        return tokens.revoke(s, name)


@router.get("/whoami")
def whoami(ctx: Reader) -> Identity:
    """The calling token's name and scopes: a cheap, read-only check that a URL and token work."""
    return Identity(token=ctx.caller.token, scopes=list(ctx.caller.scopes))
