"""Every failure becomes one JSON shape, `{"error": {"code", "message", "detail"?}}`, mapped here only.

Registry errors carry their HTTP status; trainer errors (raised by PEFT conversion) carry only a
code, so they get theirs from `TRAINER_STATUS`. Framework errors (validation, unknown routes) and
unexpected exceptions are folded into the same shape so clients parse exactly one format.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry.errors import PatchregError
from trainer.errors import TrainerError

TRAINER_STATUS = {"malformed_file": 422, "invalid_input": 422, "incompatible": 409}
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class Unsupported(PatchregError):
    """The request is valid but this server cannot carry it out (e.g. no torch for PEFT conversion)."""

    code = "unsupported"
    http_status = 501


class RangeNotSatisfiable(PatchregError):
    code = "range_not_satisfiable"
    http_status = 416

    def __init__(self, size: int) -> None:
        super().__init__(f"the requested range is outside the artifact's {size} bytes", size=size)
        self.headers = {"Content-Range": f"bytes */{size}"}


class DatabaseUnavailable(PatchregError):
    code = "database_unavailable"
    http_status = 503


def error_response(
    status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if detail:
        body["detail"] = jsonable_encoder(detail)
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="patchreg"')
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def to_response(exc: Exception) -> JSONResponse:
    """The one mapping from an exception to the response a client sees."""
    if isinstance(exc, PatchregError):
        return error_response(
            exc.http_status, exc.code, exc.message, exc.detail, getattr(exc, "headers", None)
        )
    if isinstance(exc, TrainerError):
        return error_response(TRAINER_STATUS.get(exc.code, 422), exc.code, exc.message)
    if isinstance(exc, RequestValidationError):
        errors = [{k: e.get(k) for k in ("loc", "msg", "type")} for e in exc.errors()]  # no echoed input
        return error_response(422, "invalid_input", _first_problem(errors), {"errors": errors})
    if isinstance(exc, StarletteHTTPException):
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = "no such route" if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, code, message, headers=exc.headers)
    # Starlette re-raises it after this response is sent, so the server logs the traceback once.
    return error_response(500, "internal_error", "internal server error (details are in the server log)")


def _first_problem(errors: Any) -> str:
    """One line naming the first invalid input, e.g. `query base: Field required`."""
    if not errors:
        return "invalid request"
    first = errors[0]
    where = " ".join(str(p) for p in first.get("loc", ()))
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


async def _handle(_request: Request, exc: Exception) -> JSONResponse:
    return to_response(exc)


def install(app: FastAPI) -> None:
    for kind in (PatchregError, TrainerError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, _handle)
