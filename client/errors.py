"""Turn an HTTP error response back into the exception the local services would have raised.

The server maps each `core.errors` code to a status once (`registry/api/errors.py`); this module is
the one inverse. The body's `code` decides the class, so a 409 says `AlreadyExists` or
`InvalidState` exactly as a local call would; the status only decides when there is no readable
body (a proxy's 502 page, a server that died mid-answer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

from core import errors
from core.errors import PatchregError

# status -> code, for answers without a patchreg error body. The inverse of the server's STATUS
# table where it is one-to-one (tests/client/test_errors.py checks that it agrees with it).
STATUS_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "already_exists",
    410: "data_unavailable",
    413: "payload_too_large",
    416: "range_not_satisfiable",
    422: "invalid_input",
    424: "source_unavailable",
    501: "unsupported",
}
GATEWAY = (502, 503, 504)  # with no patchreg body: nothing answered behind a proxy


class ApiError(PatchregError):
    """An error the server reported with a code this client does not know (e.g. `internal_error`),
    or an answer that is not a patchreg error at all. `detail` keeps the status and the code."""

    code = "api_error"


class ServerUnreachable(PatchregError):
    """The server could not be reached, or kept answering 503, after every retry."""

    code = "server_unreachable"
    retryable = True


def _family(cls: type[PatchregError]) -> Iterator[type[PatchregError]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _family(sub)


def _classes() -> dict[str, type[PatchregError]]:
    """code -> the class that owns it: the first class in the family to declare it (ConfigError
    inherits `invalid_input` from InvalidInput, so that code means InvalidInput)."""
    found: dict[str, type[PatchregError]] = {}
    for cls in _family(PatchregError):
        if cls.__module__ == errors.__name__ and cls is not PatchregError:
            found.setdefault(cls.code, cls)
    return found


CLASSES = _classes()


def make_error(code: str, message: str, detail: dict[str, Any]) -> PatchregError:
    """An instance of the class for `code`, built without its own constructor (RangeNotSatisfiable
    takes a size, not a message), carrying the server's message and detail."""
    cls = CLASSES.get(code, ApiError)
    exc = cls.__new__(cls)
    PatchregError.__init__(exc, message, **detail)
    return exc


def from_response(response: httpx.Response) -> PatchregError:
    """The exception for an error response (status >= 400); the body must already be read."""
    status = response.status_code
    body: Any = None
    with contextlib.suppress(ValueError):
        body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        code: str = error["code"]
        message = str(error.get("message") or code)
        detail = error.get("detail")
        detail = dict(detail) if isinstance(detail, dict) else ({} if detail is None else {"detail": detail})
        if code not in CLASSES:
            detail = {**detail, "status": status, "code": code}
        return make_error(code, message, detail)
    code = STATUS_CODES.get(status, "")
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase
    message = f"HTTP {status} from {response.request.method} {response.request.url.path}: {text}"
    if status in GATEWAY:
        return ServerUnreachable(message, status=status)
    return make_error(code, message, {"status": status} if code not in CLASSES else {})
