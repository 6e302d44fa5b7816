"""`GET /v1/whoami`: the caller's token and scopes, for `patchreg login` to check a token with."""

from __future__ import annotations

from tests.registry.api.conftest import Api, serve


def test_whoami_names_the_token_and_its_scopes_and_refuses_a_bad_one(api: Api) -> None:
    assert api.ok("GET", "/v1/whoami", as_="read") == {"token": "read", "scopes": ["read"]}
    assert api.ok("GET", "/v1/whoami", as_="write") == {"token": "write", "scopes": ["read", "write"]}
    assert api.ok("GET", "/v1/whoami", as_="admin") == {"token": "admin", "scopes": ["admin"]}
    for bad in (None, "prt_wrong"):
        assert api.ok("GET", "/v1/whoami", 401, as_=bad)["error"]["code"] == "unauthorized"
    with serve(api.registry, api.secrets, api_open_reads=True) as open_api:
        assert open_api.ok("GET", "/v1/whoami", as_=None) == {"token": None, "scopes": []}
