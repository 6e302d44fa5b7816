"""Logging in and out, and the writes that are safe from a browser: set an alias, cancel or retry a
job, queue a port, change a patch's status. Each is a form POST with the CSRF token, checked for
the write scope, carried out by the same service (and audited under the same token) as its `/v1`
route, then answered with a redirect to the page it was made on."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from core.errors import InvalidInput, Unauthorized
from registry.api.deps import RequestContext, get_state
from registry.services import aliases, jobs, patches, port_sources
from registry.web.render import HtmlRoute, page
from registry.web.session import COOKIE, LoginNeeded, Viewer, caller_for, check_write, current_viewer

router = APIRouter(route_class=HtmlRoute, include_in_schema=False)
# Every field may be missing: the scope and CSRF checks come first (403), then the service says
# what is wrong with the input (422), as for the API.
Field = Annotated[str, Form()]


def _local(target: str | None, fallback: str = "/families") -> str:
    """A redirect target on this site only (a path, never another host)."""
    if not target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return fallback
    return target


def _anonymous_viewer(request: Request) -> Viewer | None:
    try:
        return current_viewer(request)
    except LoginNeeded:
        return None


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return page(request, _anonymous_viewer(request), "login.html", next=_local(next), error=None)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, token: Field, next: Field = "/families") -> Response:
    state = get_state(request)
    state.guard.check()
    try:
        caller_for(state, token.strip())
    except Unauthorized:
        return page(
            request,
            _anonymous_viewer(request),
            "login.html",
            status_code=401,
            next=_local(next),
            error="unknown or revoked token",
        )
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(
        COOKIE,
        token.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _write(request: Request, csrf: str) -> RequestContext:
    viewer = current_viewer(request)
    check_write(viewer, request, csrf)
    return viewer.context


@router.post("/patches/{patch_id}/alias")
def set_alias(request: Request, patch_id: str, csrf: Field = "", name: Field = "production") -> Response:
    context = _write(request, csrf)
    with context.transaction() as s:
        p = patches.show_patch(s, patch_id)
        aliases.set_alias(s, p.domain, p.base, name.strip(), p.id)
    return RedirectResponse(f"/patches/{patch_id}", status_code=303)


@router.post("/patches/{patch_id}/status")
def set_status(
    request: Request, patch_id: str, csrf: Field = "", status: Field = "", reason: Field = ""
) -> Response:
    context = _write(request, csrf)
    if not reason.strip():
        raise InvalidInput("a status change needs a reason (it goes into the audit log)")
    with context.transaction() as s:
        patches.set_status(s, patch_id, status, reason.strip())
    return RedirectResponse(f"/patches/{patch_id}", status_code=303)


@router.post("/patches/{patch_id}/port")
def queue_port(request: Request, patch_id: str, csrf: Field = "", base: Field = "") -> Response:
    context = _write(request, csrf)
    with context.transaction() as s:
        job, _ = port_sources.enqueue_port(s, patch_id, base)
    return RedirectResponse(f"/jobs#job-{job.id}", status_code=303)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(request: Request, job_id: str, csrf: Field = "") -> Response:
    context = _write(request, csrf)
    with context.transaction() as s:
        jobs.cancel(s, job_id)
    return RedirectResponse("/jobs", status_code=303)


@router.post("/jobs/{job_id}/retry")
def retry_job(request: Request, job_id: str, csrf: Field = "") -> Response:
    context = _write(request, csrf)
    with context.transaction() as s:
        jobs.retry(s, job_id)
    return RedirectResponse("/jobs", status_code=303)
