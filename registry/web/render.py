"""Rendering: the templates, their filters, and errors as pages (a page never answers JSON)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from core.errors import PatchregError
from registry.api.errors import STATUS
from registry.web import HERE
from registry.web.session import LoginNeeded, Viewer

templates = Jinja2Templates(directory=HERE / "templates")


def _when(value: datetime | date | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return value.isoformat()


def _short(digest: str | None, n: int = 12) -> str:
    return (digest or "-")[:n]


templates.env.filters.update(when=_when, short=_short)


def page(
    request: Request, viewer: Viewer | None, template: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, {"viewer": viewer, **context}, status_code=status_code, headers=NO_STORE
    )


NO_STORE = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}


class HtmlRoute(APIRoute):
    """A page route: LoginNeeded sends the browser to /login, a PatchregError becomes an error page
    with the status the API would give (and the message, with server paths taken out)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginNeeded:
                target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
                return RedirectResponse(f"/login?next={target}", status_code=303)
            except PatchregError as exc:
                message = request.app.state.patchreg.redactor.text(exc.message)
                return error_page(request, STATUS.get(exc.code, 400), exc.code, message)
            except RequestValidationError as exc:
                problem = exc.errors()[0] if exc.errors() else {}
                where = " ".join(str(part) for part in problem.get("loc", ()))
                return error_page(request, 422, "invalid_input", f"{where}: {problem.get('msg', 'invalid')}")

        return route


def error_page(request: Request, status: int, code: str, message: str) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "error.html",
        {"viewer": None, "status": status, "code": code, "message": message},
        status_code=status,
        headers=NO_STORE,
    )
