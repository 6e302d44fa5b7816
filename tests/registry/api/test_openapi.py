"""The OpenAPI schema lists every status a route answers, each error with the one error shape."""

from __future__ import annotations

import re
from typing import Any

from registry.api.errors import STATUS
from tests.registry.api.conftest import Api

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
EVERY_V1 = {"401", "403", "404", "409", "422", "503"}


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in schema["paths"].items() for m, op in ops.items()]


def _error_statuses(op: dict[str, Any]) -> set[str]:
    return {
        s
        for s, r in op["responses"].items()
        if r.get("content", {}).get("application/json", {}).get("schema") == ERROR_REF
    }


def test_every_route_documents_the_error_family(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["ErrorResponse"]["required"] == ["error"]
    family = {str(s) for s in STATUS.values()}
    operations = _operations(schema)
    assert len(operations) > 25
    for method, path, op in operations:
        errors = _error_statuses(op)
        if not path.startswith("/v1/"):
            assert errors == {"503"}, path
            continue
        expected = family - {"413", "416"}
        expected |= {"413"} if "requestBody" in op else set()
        expected |= {"416"} if "206" in op["responses"] else set()
        assert EVERY_V1 <= errors == expected, (method, path, sorted(errors))
    download = schema["paths"]["/v1/patches/{patch_id}/download"]["get"]["responses"]
    assert {"416", "503"} <= set(download)
    assert "413" in _error_statuses(schema["paths"]["/v1/patches"]["post"])


def test_the_statuses_routes_really_give_are_documented(api: Api) -> None:
    """Probe every operation without a token and, for writes, with a read token: the 401s and 403s
    (and whatever else comes back) are all in that operation's documented responses."""
    schema = api.client.get("/openapi.json").json()
    for method, path, op in _operations(schema):
        if not path.startswith("/v1/"):
            continue
        url = re.sub(r"\{[^}]+\}", "abcd1234", path)
        for role in (None, "read"):
            response = api.request(method, url, as_=role, json={} if "requestBody" in op else None)
            assert str(response.status_code) in op["responses"], (method, path, role, response.status_code)
            assert response.status_code < 500


def test_upload_forms_admit_only_the_fields_the_route_reads(api: Api) -> None:
    """The upload routes refuse a form field they do not name (422), so their multipart schema says
    `additionalProperties: false`; without it, valid-by-schema cases carry stray fields and the
    fuzz run (test_schemathesis) never gets a well-formed upload through."""
    schema = api.client.get("/openapi.json").json()
    for path in ("/v1/patches", "/v1/datasets"):
        form = schema["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert form["additionalProperties"] is False, path
        response = api.post(path, data={"domain": "medical", "stray": "x"}, files={"x": b"1"})
        assert response.status_code == 422, response.text
