"""Bearer tokens: the service, 401/403 with nothing written, scope rules, token routes, open reads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select

from core.errors import AlreadyExists, InvalidInput, InvalidState, Unauthorized
from registry.db import transaction
from registry.models import ApiToken, AuditEvent
from registry.services import tokens
from tests.conftest import Registry
from tests.helpers import NothingWritten
from tests.registry.api.conftest import Api, serve


def test_token_service(registry: Registry) -> None:
    with transaction(registry.factory) as s:
        s.info["actor"] = "alice"
        row, secret = tokens.create(s, "ci", " write, read ,write")
    assert secret.startswith("prt_") and len(secret) > 40
    assert row.scopes == ["read", "write"] and row.revoked_at is None
    with transaction(registry.factory) as s:
        stored = s.scalars(select(ApiToken)).one()
        assert stored.token_hash == hashlib.sha256(secret.encode()).hexdigest() != secret
        assert tokens.authenticate(s, secret).name == "ci"
        with pytest.raises(Unauthorized):
            tokens.authenticate(s, secret + "x")
        with pytest.raises(AlreadyExists):
            tokens.create(s, "ci", "read")
        for bad in ("", "read,root"):
            with pytest.raises(InvalidInput):
                tokens.create(s, "other", bad)
        assert [t.name for t in tokens.page_tokens(s).items] == ["ci"]
    with transaction(registry.factory) as s:
        s.info["actor"] = "alice"
        assert tokens.revoke(s, "ci").revoked_at is not None
    with transaction(registry.factory) as s:
        with pytest.raises(Unauthorized, match="revoked"):
            tokens.authenticate(s, secret)
        with pytest.raises(InvalidState):
            tokens.revoke(s, "ci")
        actions = [(e.actor, e.action) for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        assert actions == [("alice", "token.create"), ("alice", "token.revoke")]
        assert secret not in str([e.detail for e in s.scalars(select(AuditEvent))])


@pytest.mark.parametrize(
    ("scopes", "needed", "granted"),
    [
        (["read"], "read", True),
        (["read"], "write", False),
        (["write"], "read", True),
        (["write"], "admin", False),
        (["admin"], "write", True),
        ([], "read", False),
    ],
)
def test_scopes_imply_lower_scopes(scopes: list[str], needed: str, granted: bool) -> None:
    assert tokens.grants(scopes, needed) is granted


def test_missing_bad_or_revoked_tokens_get_401_and_write_nothing(seeded: Api, patch_file: Path) -> None:
    api = seeded
    with transaction(api.registry.factory) as s:
        s.info["actor"] = "test"
        _, revoked = tokens.create(s, "old", "write")
        tokens.revoke(s, "old")
    attempts = {
        "no token": {"as_": None},
        "unknown token": {"as_": "prt_not-a-real-token"},
        "revoked token": {"as_": revoked},
        "not bearer": {"as_": None, "headers": {"Authorization": "Basic dXNlcjpwdw=="}},
    }
    with NothingWritten(api.registry.engine, api.registry.store.root):
        for case, kwargs in attempts.items():
            created = api.post("/v1/domains", json={"name": "legal"}, **kwargs)
            assert created.status_code == 401, case
            assert created.headers["WWW-Authenticate"].startswith("Bearer"), case
            assert created.json()["error"]["code"] == "unauthorized", case
            with open(patch_file, "rb") as f:
                data = {"domain": "medical", "base": "tiny:v1"}
                upload = api.post("/v1/patches", data=data, files={"patch": f}, **kwargs)
            assert upload.status_code == 401, case
            assert api.get("/v1/domains", **kwargs).status_code == 401, case
    assert "revoked" in api.post("/v1/domains", json={"name": "x"}, as_=revoked).json()["error"]["message"]


def test_scopes_are_enforced_per_route(seeded: Api, patch_file: Path) -> None:
    api = seeded
    with NothingWritten(api.registry.engine, api.registry.store.root):
        denied = api.post("/v1/domains", json={"name": "legal"}, as_="read")
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
        assert "needs 'write'" in denied.json()["error"]["message"]
        assert api.upload_patch(patch_file, as_="read").status_code == 403
        assert (
            api.put("/v1/aliases/medical/tiny:v1/x", json={"patch_id": "abcd"}, as_="read").status_code == 403
        )
        assert api.post("/v1/jobs/abcd/cancel", as_="read").status_code == 403
        assert api.get("/v1/tokens", as_="write").status_code == 403
        assert api.post("/v1/tokens", json={"name": "n", "scopes": ["read"]}, as_="write").status_code == 403
    assert api.get("/v1/domains", as_="write").status_code == 200  # write implies read
    assert (
        api.post("/v1/domains", json={"name": "legal"}, as_="admin").status_code == 201
    )  # admin implies write


def test_token_routes_need_admin_and_show_the_secret_once(api: Api) -> None:
    made = api.ok("POST", "/v1/tokens", 201, json={"name": "deploy", "scopes": ["write"]}, as_="admin")
    assert made["token"]["scopes"] == ["write"]
    secret = made["secret"]
    assert api.post("/v1/domains", json={"name": "legal"}, as_=secret).status_code == 201
    listed = api.ok("GET", "/v1/tokens", as_="admin")
    assert [t["name"] for t in listed] == ["admin", "deploy", "read", "write"]
    assert secret not in str(listed)
    bad = api.ok("POST", "/v1/tokens", 422, json={"name": "x", "scopes": ["root"]}, as_="admin")
    assert bad["error"]["code"] == "invalid_input"

    revoked = api.ok("DELETE", "/v1/tokens/deploy", as_="admin")
    assert revoked["revoked_at"] is not None
    assert api.get("/v1/domains", as_=secret).status_code == 401
    assert api.ok("DELETE", "/v1/tokens/deploy", 409, as_="admin")["error"]["code"] == "invalid_state"
    assert api.ok("DELETE", "/v1/tokens/nobody", 404, as_="admin")["error"]["code"] == "not_found"
    with transaction(api.registry.factory) as s:
        actors = {
            (e.action, e.subject): e.actor
            for e in s.scalars(select(AuditEvent).where(AuditEvent.action.like("token.%")))
        }
    assert actors[("token.create", "deploy")] == actors[("token.revoke", "deploy")] == "token:admin"
    assert actors[("token.create", "read")] == "test"


def test_open_reads_let_reads_through_but_never_writes(seeded: Api, patch_file: Path) -> None:
    pid = seeded.upload_patch(patch_file).json()["id"]
    with serve(seeded.registry, seeded.secrets, api_open_reads=True) as api:
        assert [d["name"] for d in api.ok("GET", "/v1/domains", as_=None)] == ["medical"]
        assert api.get("/v1/patches/" + pid + "/download", as_=None).content == patch_file.read_bytes()
        with NothingWritten(api.registry.engine, api.registry.store.root):
            # an anonymous compatibility check answers but records no verdict and no audit event
            verdict = api.ok("GET", f"/v1/patches/{pid}/compat", params={"base": "tiny:v2"}, as_=None)
            assert verdict["verdict"] == "compatible"
            assert api.post("/v1/domains", json={"name": "legal"}, as_=None).status_code == 401
            assert api.get("/v1/tokens", as_=None).status_code == 401
            assert api.get("/v1/domains", as_="prt_wrong").status_code == 401  # a bad token is still refused
            api.ok("GET", f"/v1/patches/{pid}/compat", params={"base": "tiny:v2"}, as_="read")  # tokens too
    assert seeded.get("/v1/domains", as_=None).status_code == 401  # the default keeps reads closed
