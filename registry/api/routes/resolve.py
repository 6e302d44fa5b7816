"""`GET /v1/resolve`: which patch `fetch` serves for a domain on a base, why, and where to get it."""

from __future__ import annotations

from fastapi import APIRouter, Request

from registry.api.auth import Reader
from registry.schemas import Resolution
from registry.services import resolve

router = APIRouter(tags=["fetch"])


class ResolvedPatch(Resolution):
    download_url: str


@router.get("/resolve")
def resolve_patch(
    domain: str, base: str, request: Request, ctx: Reader, method: str | None = None
) -> ResolvedPatch:
    """The production alias, else the best validated patch, else the newest candidate; a 404 lists
    every patch of the domain and why it was passed over."""
    with ctx.transaction() as s:
        chosen = resolve.resolve_patch(s, domain, base, method)
    url = request.url_for("download_patch", patch_id=chosen.patch.id)
    return ResolvedPatch(patch=chosen.patch, why=chosen.why, download_url=str(url))
