"""Request limits: body sizes counted on the bytes actually received (Content-Length is only a
shortcut), and every request's path, query and JSON body held to `core.inputs` before a route runs.

Uploads (multipart to the upload routes) may be up to `api_max_upload_bytes`; they stream through
untouched and `uploads.receive_form` counts them while spooling to disk. Every other body is small
(JSON) and is read here in full, up to `api_max_json_bytes`, before the app sees it, so nothing
downstream can be made to buffer more than that. A JSON body is parsed here once with the shared
limits (depth, number size, finite numbers, NUL-free strings), so no route, validator or database
ever sees a 100k-deep document, NaN, or a NUL; a NUL in the path or query is refused the same way.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import inputs
from core.errors import InvalidInput, PayloadTooLarge
from registry.api.errors import to_response

UPLOAD_SETTING = "PATCHREG_API_MAX_UPLOAD_BYTES"
JSON_SETTING = "PATCHREG_API_MAX_JSON_BYTES"


def too_large(limit: int, setting: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body exceeds the limit of {limit:,} bytes ({setting})", limit=limit)


def _is_json(content_type: str) -> bool:
    """Whether FastAPI would parse this body as JSON (it does when no content type is given)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return (
        not media
        or media == "application/json"
        or (media.startswith("application/") and media.endswith("+json"))
    )


def check_target(scope: Scope) -> None:
    """The `core.inputs` rules for the path and the query parameters every route reads."""
    inputs.text(scope.get("path", ""), "the request path")
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        inputs.text(name, "a query parameter name")
        inputs.text(value, f"query parameter {name}")


def check_body(scope: Scope, body: bytes) -> None:
    """The `core.inputs` rules for a JSON body (parsed once more by FastAPI, within these limits)."""
    if body and _is_json(Headers(scope=scope).get("content-type", "")):
        inputs.loads(body, "request body")


def is_upload(scope: Scope, upload_routes: frozenset[tuple[str, str]]) -> bool:
    content_type = Headers(scope=scope).get("content-type", "")
    return (scope["method"], scope["path"]) in upload_routes and content_type.lower().startswith(
        "multipart/form-data"
    )


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, json_limit: int, upload_limit: int, upload_routes: frozenset[tuple[str, str]]
    ) -> None:
        self.app = app
        self.json_limit, self.upload_limit = json_limit, upload_limit
        self.upload_routes = upload_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_target(scope)
        except InvalidInput as exc:
            await to_response(exc)(scope, receive, send)
            return
        upload = is_upload(scope, self.upload_routes)
        limit, setting = (self.upload_limit, UPLOAD_SETTING) if upload else (self.json_limit, JSON_SETTING)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isascii() and declared.isdigit() and inputs.decimal(declared, limit + 1) > limit:
            await to_response(too_large(limit, setting))(scope, receive, send)
            return
        if upload:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await to_response(too_large(limit, setting))(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            check_body(scope, body)
        except InvalidInput as exc:
            await to_response(exc)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands out the buffered body once, then passes through (for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
