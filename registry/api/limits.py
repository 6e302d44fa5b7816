"""Request body limits, counted on the bytes actually received (Content-Length is only a shortcut).

Uploads (multipart to the upload routes) may be up to `api_max_upload_bytes`; they stream through
untouched and `uploads.receive_form` counts them while spooling to disk. Every other body is small
(JSON) and is read here in full, up to `api_max_json_bytes`, before the app sees it, so nothing
downstream can be made to buffer more than that.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import PayloadTooLarge
from registry.api.errors import to_response

UPLOAD_SETTING = "PATCHREG_API_MAX_UPLOAD_BYTES"
JSON_SETTING = "PATCHREG_API_MAX_JSON_BYTES"


def too_large(limit: int, setting: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body exceeds the limit of {limit:,} bytes ({setting})", limit=limit)


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
        upload = is_upload(scope, self.upload_routes)
        limit, setting = (self.upload_limit, UPLOAD_SETTING) if upload else (self.json_limit, JSON_SETTING)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
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
        await self.app(scope, _replay(b"".join(chunks), receive), send)


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
