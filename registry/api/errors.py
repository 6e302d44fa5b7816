"""Every failure becomes one JSON shape, `{"error": {"code", "message", "detail"?}}`, mapped here only.

`STATUS` is the one table from an error code (`core.errors`) to an HTTP status. Framework errors
(validation, unknown routes) and unexpected exceptions are folded into the same shape so clients
parse exactly one format.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import PatchregError

STATUS = {
    "invalid_input": 422,
    "malformed_file": 422,
    "payload_too_large": 413,
    "not_found": 404,
    "already_exists": 409,
    "ambiguous": 409,
    "invalid_state": 409,
    "incompatible": 409,
    "data_unavailable": 410,
    "range_not_satisfiable": 416,
    "source_unavailable": 424,
    "corrupt_artifact": 500,
    "unsupported": 501,
    "schema_out_of_date": 503,
    "database_unavailable": 503,
    "unauthorized": 401,
    "forbidden": 403,
}
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


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
            STATUS.get(exc.code, 400), exc.code, exc.message, exc.detail, getattr(exc, "headers", None)
        )
    if isinstance(exc, RequestValidationError):
        errors = [{k: e.get(k) for k in ("loc", "msg", "type")} for e in exc.errors()]  # no echoed input
        return error_response(422, "invalid_input", _first_problem(errors), {"errors": errors})
    if isinstance(exc, StarletteHTTPException):
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = "no such route" if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, code, message, headers=dict(exc.headers or {}))
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
    for kind in (PatchregError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, _handle)
