"""Races: N identical requests sent at once, on SQLite and PostgreSQL. One creates, every other one
gets the documented 409 (or 200 where the call is idempotent), and none a 500.

Each request runs on its own thread through the ASGI app, started together behind a barrier, so
the service code of the N requests really overlaps (the app runs sync handlers in a thread pool).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from registry.db import transaction
from registry.models import Artifact, AuditEvent, CompatVerdict, Dataset
from tests.registry.api.conftest import Api, jsonl

N = 20
DATA = jsonl({"prompt": "fever and cough:", "completion": " influenza"}, {"text": "aspirin thins blood"})


def racing(api: Api) -> Api:
    """The same app and tokens, with a server error answered as the 500 a client sees, not raised."""
    return Api(TestClient(api.client.app, raise_server_exceptions=False), api.registry, api.secrets)


@pytest.fixture
def server(api: Api) -> Api:
    return racing(api)


@pytest.fixture
def family(seeded: Api) -> Api:
    return racing(seeded)


def race(send: Callable[[int], httpx.Response], n: int = N) -> Counter[int]:
    """The status codes of `send(0)` … `send(n - 1)`, all started at the same moment."""
    barrier = threading.Barrier(n)

    def one(i: int) -> httpx.Response:
        barrier.wait()
        return send(i)

    with ThreadPoolExecutor(n) as pool:
        responses = list(pool.map(one, range(n)))
    statuses = Counter(r.status_code for r in responses)
    for r in responses:
        assert r.status_code < 500, f"{dict(statuses)}: {r.text}"
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "already_exists", r.text
    return statuses


def _count(api: Api, *columns: object) -> int:
    with transaction(api.registry.factory) as s:
        return s.scalar(select(func.count()).select_from(*columns)) or 0


def test_same_domain(server: Api) -> None:
    assert race(lambda _: server.post("/v1/domains", json={"name": "legal"})) == {201: 1, 409: N - 1}
    assert [d["name"] for d in server.ok("GET", "/v1/domains")] == ["legal"]


def test_same_token(server: Api) -> None:
    body = {"name": "ci", "scopes": ["read"]}
    assert race(lambda _: server.post("/v1/tokens", json=body, as_="admin")) == {201: 1, 409: N - 1}


def test_same_base(server: Api, make_tiny_model) -> None:
    body = {"ref": "fresh:v1", "source": str(make_tiny_model(seed=0))}
    assert race(lambda _: server.post("/v1/bases", json=body, as_="admin")) == {201: 1, 409: N - 1}
    assert [b["ref"] for b in server.ok("GET", "/v1/bases")] == ["fresh:v1"]


def test_versions_of_a_new_family(server: Api, make_tiny_model) -> None:
    """Distinct versions of a family nobody registered yet: all of them land, in one family."""
    source = str(make_tiny_model(seed=0))
    got = race(
        lambda i: server.post("/v1/bases", json={"ref": f"fresh:v{i}", "source": source}, as_="admin"), n=8
    )
    assert got == {201: 8}
    assert {b["family"] for b in server.ok("GET", "/v1/bases")} == {"fresh"}


def test_same_dataset_name(family: Api) -> None:
    def send(_: int) -> httpx.Response:
        form = {"domain": "medical", "name": "notes", "role": "train"}
        return family.post("/v1/datasets", data=form, files={"file": ("notes.jsonl", DATA)})

    assert race(send) == {201: 1, 409: N - 1}
    assert _count(family, Dataset) == 1
    assert _count(family, Artifact) == 1


def test_same_content_under_different_names(family: Api) -> None:
    def send(i: int) -> httpx.Response:
        form = {"domain": "medical", "name": f"notes-{i}", "role": "train"}
        return family.post("/v1/datasets", data=form, files={"file": ("notes.jsonl", DATA)})

    assert race(send) == {201: N}
    assert _count(family, Dataset) == N
    assert _count(family, Artifact) == 1  # one blob row, shared
    digest = family.ok("GET", "/v1/datasets")[0]["digest"]
    assert family.registry.store.local_path(digest).is_file()


def test_losers_never_take_the_winners_blob(family: Api) -> None:
    """Half race for one name (their losers roll back the blob row they inserted), half upload the
    same content under names of their own: every dataset that was created can be read."""

    def send(i: int) -> httpx.Response:
        name = "notes" if i % 2 else f"notes-{i}"
        form = {"domain": "medical", "name": name, "role": "train"}
        return family.post("/v1/datasets", data=form, files={"file": ("notes.jsonl", DATA)})

    assert race(send) == {201: N // 2 + 1, 409: N // 2 - 1}
    assert _count(family, Artifact) == 1
    digest = family.ok("GET", "/v1/datasets")[0]["digest"]
    assert family.registry.store.local_path(digest).read_bytes() == DATA


def test_same_patch(family: Api, patch_file: Path) -> None:
    """Importing the same bytes into one domain and base is idempotent: one 201, then 200 with the
    same patch; one row, one blob, one audit entry."""
    answers: list[httpx.Response] = []

    def send(_: int) -> httpx.Response:
        answers.append(family.upload_patch(patch_file))
        return answers[-1]

    assert race(send) == {201: 1, 200: N - 1}
    assert len({r.json()["id"] for r in answers}) == 1
    assert len(family.ok("GET", "/v1/patches")) == 1
    assert _count(family, Artifact) == 1
    assert [e["action"] for e in family.ok("GET", "/v1/audit")].count("patch.imported") == 1


def test_same_alias(family: Api, patch_file: Path) -> None:
    """Setting an alias is idempotent: every identical PUT answers 200, one alias row results."""
    pid = family.upload_patch(patch_file).json()["id"]
    path = "/v1/aliases/medical/tiny:v1/production"
    assert race(lambda _: family.put(path, json={"patch_id": pid})) == {200: N}
    assert [a["patch_id"] for a in family.ok("GET", "/v1/aliases")] == [pid]


def test_compat_on_a_pair_never_checked(family: Api, patch_file: Path) -> None:
    pid = family.upload_patch(patch_file).json()["id"]
    path = f"/v1/patches/{pid}/compat"
    assert race(lambda _: family.get(path, params={"base": "tiny:v2"})) == {200: N}
    assert race(lambda _: family.get(path, params={"base": "tiny:v2"}, as_="write")) == {200: N}
    assert _count(family, CompatVerdict) == 0


def test_compat_by_a_read_token_writes_nothing(family: Api, patch_file: Path) -> None:
    """A read is a read: no verdict row and no audit event, whoever asks and however often."""
    pid = family.upload_patch(patch_file).json()["id"]
    events = _count(family, AuditEvent)
    for base in ("tiny:v2", "tiny:v2", "tiny:v3"):
        family.ok("GET", f"/v1/patches/{pid}/compat", params={"base": base}, as_="read")
    assert _count(family, CompatVerdict) == 0
    assert _count(family, AuditEvent) == events


def test_recording_a_verdict(family: Api, patch_file: Path) -> None:
    """POST records the verdict: the first writer inserts it, the others find it (200 each), and
    the audit log has one entry for the new verdict, none for rechecks that changed nothing."""
    pid = family.upload_patch(patch_file).json()["id"]

    def send(_: int) -> httpx.Response:
        return family.post(f"/v1/patches/{pid}/compat", params={"base": "tiny:v2"})

    def checks() -> int:
        return _count(family, select(AuditEvent).where(AuditEvent.action == "compat.check").subquery())

    assert race(send) == {200: N}
    assert (_count(family, CompatVerdict), checks()) == (1, 1)
    assert race(send) == {200: N}
    assert (_count(family, CompatVerdict), checks()) == (1, 1)
