"""Bounded retries with backoff: on a refused connection (any method: nothing was sent) and on 503
or a dropped answer (idempotent methods only: a POST is never sent twice)."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from client import Client, ServerUnreachable
from client.transport import Transport
from core.errors import DatabaseUnavailable
from tests.client.conftest import free_port
from tests.client.fakes import Reply, Seen, fake_server

UNAVAILABLE = json.dumps({"error": {"code": "database_unavailable", "message": "db down"}}).encode()
DOMAIN = {"name": "law", "description": "", "created_at": "2026-01-01T00:00:00"}


def _json(status: int, body: object) -> Reply:
    return Reply(status, json.dumps(body).encode(), {"Content-Type": "application/json"})


def test_503_twice_then_200() -> None:
    answers = [Reply(503, UNAVAILABLE), Reply(503, UNAVAILABLE, {"Retry-After": "0"}), _json(200, [DOMAIN])]
    with fake_server(lambda _: answers.pop(0)) as (url, seen), Client(url, "t", backoff=0.01) as c:
        assert [d.name for d in c.list_domains()] == ["law"]
    assert [r.method for r in seen] == ["GET"] * 3
    assert seen[0].headers["authorization"] == "Bearer t"


def test_503_every_time_ends_with_the_servers_error() -> None:
    with (
        fake_server(lambda _: Reply(503, UNAVAILABLE)) as (url, seen),
        Client(url, "t", retries=2, backoff=0.01) as c,
        pytest.raises(DatabaseUnavailable) as caught,
    ):
        c.list_domains()
    assert len(seen) == 3 and caught.value.retryable and caught.value.message == "db down"


def test_a_post_answered_503_is_not_sent_again() -> None:
    refused = pytest.raises(DatabaseUnavailable)
    with fake_server(lambda _: Reply(503, UNAVAILABLE)) as (url, seen), Client(url, "t") as c, refused:
        c.create_domain("law")
    assert [r.method for r in seen] == ["POST"]


def test_a_post_whose_answer_was_lost_is_not_sent_again() -> None:
    with (
        fake_server(lambda _: Reply(201, b"{}", cut_after=0)) as (url, seen),
        Client(url, "t", backoff=0.01) as c,
        pytest.raises(ServerUnreachable),
    ):
        c.create_domain("law")
    assert [r.method for r in seen] == ["POST"]


def test_a_get_whose_answer_was_lost_is_retried() -> None:
    answers = [Reply(200, b"[]", cut_after=0), _json(200, [DOMAIN])]
    with fake_server(lambda _: answers.pop(0)) as (url, seen), Client(url, "t", backoff=0.01) as c:
        assert len(c.list_domains()) == 1
    assert len(seen) == 2


def test_connection_refused_gives_up_after_the_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with Client(url, "t", retries=2, backoff=0.05) as c, pytest.raises(ServerUnreachable) as caught:
        c.list_domains()
    assert caught.value.detail["attempts"] == 3 and caught.value.retryable
    assert 0.15 <= time.monotonic() - started < 5  # waited 0.05 + 0.1 between the three tries


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_connection_refused_until_the_server_is_up(method: str) -> None:
    """A request made while the server is still starting goes through once it listens; a POST too,
    since a refused connection carried nothing."""
    port = free_port()
    ready = threading.Event()
    result: list[Seen] = []

    def start_later() -> None:
        time.sleep(0.4)
        with fake_server(
            lambda _: _json(200 if method == "GET" else 201, [DOMAIN] if method == "GET" else DOMAIN), port
        ) as (_, seen):
            ready.wait(10)
            result.extend(seen)

    thread = threading.Thread(target=start_later)
    thread.start()
    try:
        with Client(f"http://127.0.0.1:{port}", "t", retries=6, backoff=0.1) as c:
            got = c.list_domains()[0] if method == "GET" else c.create_domain("law")
        assert got.name == "law"
    finally:
        ready.set()
        thread.join(10)
    assert [r.method for r in result] == [method]


def test_backoff_grows_and_honours_retry_after_up_to_the_cap() -> None:
    t = Transport("http://127.0.0.1:1", None, backoff=0.5, max_backoff=8.0)
    assert [t.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    request = httpx.Request("GET", "http://127.0.0.1:1/")
    assert t.delay(0, httpx.Response(503, headers={"Retry-After": "3"}, request=request)) == 3.0
    assert t.delay(0, httpx.Response(503, headers={"Retry-After": "120"}, request=request)) == 8.0
    t.close()
