"""Every failure becomes one JSON shape, `{"error": {"code", "message", "detail"?}}`, mapped here only.

`STATUS` is the one table from an error code (`core.errors`) to an HTTP status. Framework errors
(validation, unknown routes) and unexpected exceptions are folded into the same shape so clients
parse exactly one format. `document` writes the same table into the OpenAPI schema, so every route
lists the statuses it can answer with, each with this shape.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import PatchregError
from registry.api.redact import Redactor

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
    "corrupt_artifact": 503,  # the stored copy failed its digest check: a server-side fault, retryable
    "unsupported": 501,
    "schema_out_of_date": 503,
    "database_unavailable": 503,
    "store_unavailable": 503,
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


def to_response(exc: Exception, redactor: Redactor | None = None) -> JSONResponse:
    """The one mapping from an exception to the response a client sees (with server paths taken
    out of the message by `redactor`)."""
    if isinstance(exc, PatchregError):
        message, detail = exc.message, exc.detail
        if redactor is not None:
            message, detail = redactor.text(message), redactor.value(detail)
        return error_response(
            STATUS.get(exc.code, 400), exc.code, message, detail, getattr(exc, "headers", None)
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


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    state = getattr(request.app.state, "patchreg", None)
    return to_response(exc, state.redactor if state is not None else None)


def install(app: FastAPI) -> None:
    for kind in (PatchregError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, _handle)


class ErrorBody(BaseModel):
    code: str
    message: str
    detail: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    """What every error answers with."""

    error: ErrorBody


# Statuses that only some routes can give: 413 needs a request body, 416 a byte-range download.
_BODY_ONLY, _RANGE_ONLY = 413, 416


def _error_statuses() -> dict[int, list[str]]:
    """Each status of the error family and the codes that map to it."""
    codes: dict[int, list[str]] = defaultdict(list)
    for code, status in STATUS.items():
        codes[status].append(code)
    return dict(sorted(codes.items()))


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the error family to every `/v1` operation of an OpenAPI schema (and 503 to /healthz).

    Any `/v1` route can be refused (401/403), find no such record or an ambiguous id prefix
    (404/409), get invalid input (422) or meet a database it cannot use (503); the service-level
    codes (410, 424, 501) are listed on every route too, since a route's services decide them.
    413 goes only to operations with a request body, 416 only to those that serve byte ranges.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorResponse"] = error_schema
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    statuses = _error_statuses()
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, codes in statuses.items():
                if not path.startswith("/v1/") and status != 503:
                    continue
                if (status == _BODY_ONLY and "requestBody" not in operation) or (
                    status == _RANGE_ONLY and "206" not in responses
                ):
                    continue
                described = responses.get(str(status), {}).get("description")
                responses[str(status)] = {
                    "description": described or f"error codes: {', '.join(codes)}",
                    "content": content,
                }
    for unused in ("HTTPValidationError", "ValidationError"):  # 422 answers ErrorResponse instead
        components.pop(unused, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Generate the schema as FastAPI does, then document the error family once, here."""
    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(default())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
