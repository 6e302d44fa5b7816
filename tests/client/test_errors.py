"""Errors come back as the `core.errors` class the local services raise, with the same code: from a
real server on both databases, and from answers that are not patchreg's (a proxy's 502 page)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from client import ApiError, Client, ServerUnreachable
from client.errors import CLASSES, STATUS_CODES, from_response
from core import errors
from core.errors import (
    AlreadyExists,
    Forbidden,
    InvalidInput,
    InvalidState,
    MalformedFile,
    NotFound,
    PatchregError,
    RangeNotSatisfiable,
    Unauthorized,
)
from registry.api.errors import STATUS
from tests.client.conftest import Server


def test_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as caught:
        client.show_patch("ffffffffffff")
    assert caught.value.code == "not_found" and "ffffffffffff" in caught.value.message
    with pytest.raises(NotFound):
        client.show_base("tiny:v99")


def test_already_exists_and_invalid_state_share_409(client: Client, domain: str, patch_file: Path) -> None:
    with pytest.raises(AlreadyExists) as caught:
        client.create_domain(domain)
    assert caught.value.code == "already_exists" and not isinstance(caught.value, InvalidState)
    job = client.port(client.upload_patch(patch_file, domain, "tiny:v1").id, "tiny:v2")
    client.cancel_job(job.id)
    with pytest.raises(InvalidState) as state:  # also 409: the body's code decides the class
        client.cancel_job(job.id)
    assert state.value.code == "invalid_state" and not isinstance(state.value, AlreadyExists)


def test_unauthorized_and_forbidden(server: Server) -> None:
    with server.client(None) as anonymous, pytest.raises(Unauthorized) as caught:
        anonymous.list_patches()
    assert caught.value.code == "unauthorized"
    with Client(server.url, "prt_not-a-real-token") as wrong, pytest.raises(Unauthorized):
        wrong.list_domains()
    with server.client("read") as reader, pytest.raises(Forbidden) as denied:
        reader.create_domain("never")
    assert "write" in denied.value.message
    with server.client("write") as writer, pytest.raises(Forbidden):
        writer.list_tokens()  # admin only


def test_invalid_input(client: Client, domain: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as framework:  # a request FastAPI itself refuses (422)
        client.audit(limit=0)
    assert framework.value.code == "invalid_input" and "limit" in framework.value.message
    assert framework.value.detail["errors"][0]["loc"] == ["query", "limit"]
    with pytest.raises(InvalidInput):  # one a service refuses
        client.list_jobs(status="sleeping")
    not_a_patch = tmp_path / "p.safetensors"
    not_a_patch.write_bytes(b"hello")
    with pytest.raises(MalformedFile) as malformed:  # a subclass keeps its own code
        client.upload_patch(not_a_patch, domain, "tiny:v1")
    assert malformed.value.code == "malformed_file"


def test_the_status_table_inverts_the_servers() -> None:
    """Where the server maps one code to a status, the client maps that status back to it."""
    for status, code in STATUS_CODES.items():
        assert STATUS.get(code) == status, (status, code)
    one_to_one = {s for s in set(STATUS.values()) if list(STATUS.values()).count(s) == 1}
    assert one_to_one - {500, 503} <= set(STATUS_CODES)


def test_every_core_code_comes_back_as_its_class() -> None:
    family = [c for c in _family(PatchregError) if c.__module__ == errors.__name__ and c is not PatchregError]
    assert {c.code for c in family} == set(CLASSES)
    for code, cls in CLASSES.items():
        response = _response(STATUS[code], {"error": {"code": code, "message": "m", "detail": {"k": 1}}})
        exc = from_response(response)
        assert type(exc) is cls and exc.code == code and (exc.message, exc.detail) == ("m", {"k": 1})
    assert isinstance(
        from_response(_response(416, {"error": {"code": "range_not_satisfiable", "message": "x"}})),
        RangeNotSatisfiable,
    )


def test_answers_that_are_not_patchregs() -> None:
    unknown = from_response(_response(500, {"error": {"code": "internal_error", "message": "boom"}}))
    assert type(unknown) is ApiError and unknown.detail == {"status": 500, "code": "internal_error"}
    gateway = from_response(httpx.Response(502, text="<html>Bad Gateway</html>", request=_request()))
    assert type(gateway) is ServerUnreachable and gateway.retryable and "502" in gateway.message
    bare = from_response(httpx.Response(404, text="nope", request=_request()))
    assert type(bare) is NotFound
    teapot = from_response(httpx.Response(418, text="", request=_request()))
    assert type(teapot) is ApiError and teapot.detail == {"status": 418}


def _family(cls: type) -> list[type]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _family(sub))]


def _request() -> httpx.Request:
    return httpx.Request("GET", "http://127.0.0.1/v1/x")


def _response(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, json=body, request=_request())
