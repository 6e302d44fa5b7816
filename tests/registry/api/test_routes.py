"""Every /v1 route end to end through the HTTP layer, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from registry.db import transaction
from registry.models import AuditEvent, Job
from registry.services import evaluations, ports
from registry.services.lookup import get_dataset
from tests.registry.api.conftest import Api, jsonl

TRAIN = jsonl({"prompt": "fever and cough:", "completion": " influenza"}, {"text": "aspirin thins blood"})
EVAL = jsonl({"prompt": "fever?", "choices": [" yes", " no"], "answer": 0}, {"text": "rest helps"})


def _add_dataset(api: Api, name: str, role: str, data: bytes, **extra: str) -> dict:
    form = {"domain": "medical", "name": name, "role": role, **extra}
    return api.ok("POST", "/v1/datasets", 201, data=form, files={"file": (f"{name}.jsonl", data)})


def test_bases_domains_and_datasets(seeded: Api) -> None:
    api = seeded
    listed = api.ok("GET", "/v1/bases", params={"family": "tiny"})
    assert [b["ref"] for b in listed] == ["tiny:v1", "tiny:v2", "tiny:v3"]
    assert listed[1]["parent"] == "tiny:v1"
    v1 = api.ok("GET", "/v1/bases/tiny:v1")
    assert v1["num_tensors"] == len(v1["tensor_table"]) > 0
    assert api.ok("GET", "/v1/bases/tiny:v9", 404)["error"]["code"] == "not_found"
    jobs = api.ok("GET", "/v1/jobs", params={"kind": "port_all"})
    assert [j["payload"] for j in jobs] == [{"base": "tiny:v2"}]  # the parent edge queued its porting

    api.ok("POST", "/v1/domains", 201, json={"name": "legal", "description": "contracts"})
    assert [d["name"] for d in api.ok("GET", "/v1/domains")] == ["legal", "medical"]
    dup = api.ok("POST", "/v1/domains", 409, json={"name": "legal"})
    assert dup["error"]["code"] == "already_exists"

    train = _add_dataset(api, "notes", "train", TRAIN, available_until="2999-01-01")
    assert (train["rows"], train["available_until"]) == (2, "2999-01-01")
    assert train["digest"] == hashlib.sha256(TRAIN).hexdigest()
    _add_dataset(api, "exam", "eval", EVAL)
    listed = api.ok("GET", "/v1/datasets", params={"domain": "medical"})
    assert [(d["name"], d["role"]) for d in listed] == [("exam", "eval"), ("notes", "train")]
    assert api.ok("GET", "/v1/datasets", params={"domain": "legal"}) == []


def test_patch_routes_from_upload_to_resolve(seeded: Api, patch_file: Path) -> None:
    api = seeded
    response = api.upload_patch(patch_file)
    assert response.status_code == 201, response.text
    patch = response.json()
    pid = patch["id"]
    assert (patch["origin"], patch["status"], patch["base"]) == ("imported", "candidate", "tiny:v1")
    assert patch["digest"] == hashlib.sha256(patch_file.read_bytes()).hexdigest()

    assert [
        p["id"] for p in api.ok("GET", "/v1/patches", params={"domain": "medical", "base": "tiny:v1"})
    ] == [pid]
    assert api.ok("GET", "/v1/patches", params={"status": "validated"}) == []
    assert api.ok("GET", "/v1/patches", params={"status": "shiny"}, status=422)["error"]["code"] == (
        "invalid_input"
    )
    assert api.ok("GET", f"/v1/patches/{pid[:6]}")["id"] == pid

    changed = api.ok("PUT", f"/v1/patches/{pid}/status", json={"status": "validated", "reason": "reviewed"})
    assert changed["status"] == "validated"
    with transaction(api.registry.factory) as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "patch.status")).one()
        assert (event.actor, event.detail["reason"]) == ("token:write", "reviewed")

    fits = api.ok("GET", f"/v1/patches/{pid}/compat", params={"base": "tiny:v2"})
    assert (fits["verdict"], fits["source_base"], fits["export_rank"]) == ("compatible", "tiny:v1", None)
    misfit = api.ok("GET", f"/v1/patches/{pid}/compat", params={"base": "tiny:v3"})
    assert misfit["verdict"] == "incompatible"
    assert {r["code"] for r in misfit["reasons"]} == {"shape_mismatch"}
    matrix = ("GET", "/v1/families/tiny/matrix")
    assert [c["state"] for c in api.ok(*matrix)["rows"][0]["cells"]][1:] == ["not checked"] * 2  # GETs
    for base, checked in (("tiny:v2", fits), ("tiny:v3", misfit)):
        recorded = api.ok("POST", f"/v1/patches/{pid}/compat", params={"base": base})
        assert (recorded["verdict"], recorded["reasons"]) == (checked["verdict"], checked["reasons"])
    table = api.ok(*matrix, params={"domain": "medical"})
    assert table["versions"] == ["tiny:v1", "tiny:v2", "tiny:v3"]
    assert [c["state"] for c in table["rows"][0]["cells"]] == ["source", "compatible", "incompatible"]

    queued = api.ok("POST", f"/v1/patches/{pid[:6]}/port", 201, json={"base": "tiny:v2"})
    assert (queued["kind"], queued["payload"]) == ("port", {"patch_id": pid, "base": "tiny:v2"})
    assert queued["dedupe_key"] == f"port:{pid}:tiny:v2"
    again = api.ok("POST", f"/v1/patches/{pid}/port", 200, json={"base": "tiny:v2"})
    assert again["id"] == queued["id"]
    own = api.ok("POST", f"/v1/patches/{pid}/port", 422, json={"base": "tiny:v1"})
    assert "already belongs" in own["error"]["message"]

    chosen = api.ok("GET", "/v1/resolve", params={"domain": "medical", "base": "tiny:v1"})
    assert (chosen["patch"]["id"], chosen["why"]) == (
        pid,
        "newest validated (no validated patch reports accuracy or loss)",
    )
    assert chosen["download_url"].endswith(f"/v1/patches/{pid}/download")
    download = api.get(chosen["download_url"])
    assert download.status_code == 200 and download.content == patch_file.read_bytes()


def test_lineage_evaluations_and_aliases(seeded: Api, patch_file: Path) -> None:
    api = seeded
    pid = api.upload_patch(patch_file).json()["id"]
    _add_dataset(api, "exam", "eval", EVAL)
    with transaction(api.registry.factory) as s:
        ported = ports.port_patch(s, api.registry.store, pid, "tiny:v2").patch
        assert ported is not None
        exam = get_dataset(s, "medical", "exam").id
        evaluations.record(s, ported.id, "tiny:v2", exam, {"loss": 1.5, "accuracy": 0.75})
        evaluations.record(s, None, "tiny:v2", exam, {"loss": 2.0})  # the base alone: not the patch's

    tree = api.ok("GET", f"/v1/patches/{ported.id}/lineage")
    assert tree["focus"] == ported.id and tree["root"]["patch"]["id"] == pid
    assert [(c["patch"]["id"], c["verdict"]) for c in tree["root"]["children"]] == [(ported.id, "compatible")]
    evals = api.ok("GET", f"/v1/patches/{ported.id[:8]}/evaluations")
    assert [(e["dataset"], e["metrics"]) for e in evals] == [
        ("medical/exam", {"loss": 1.5, "accuracy": 0.75})
    ]
    assert api.ok("GET", f"/v1/patches/{pid}/evaluations") == []

    path = "/v1/aliases/medical/tiny:v2/production"
    alias = api.ok("PUT", path, json={"patch_id": ported.id[:6]})
    assert (alias["base"], alias["patch_id"]) == ("tiny:v2", ported.id)
    assert [a["name"] for a in api.ok("GET", "/v1/aliases", params={"domain": "medical"})] == ["production"]
    chosen = api.ok("GET", "/v1/resolve", params={"domain": "medical", "base": "tiny:v2"})
    assert (chosen["patch"]["id"], chosen["why"]) == (ported.id, "alias production")
    wrong = api.ok("PUT", "/v1/aliases/medical/tiny:v1/production", 422, json={"patch_id": ported.id})
    assert "not medical on tiny:v1" in wrong["error"]["message"]
    assert api.delete(path).status_code == 204
    assert api.ok("GET", "/v1/aliases") == []
    assert api.ok("DELETE", path, 404)["error"]["code"] == "not_found"


def test_job_routes(seeded: Api) -> None:
    api = seeded
    refused = api.ok(
        "POST", "/v1/jobs/train", 422, json={"domain": "medical", "base": "tiny:v1", "method": "lora"}
    )
    assert "no train dataset" in refused["error"]["message"]
    _add_dataset(api, "notes", "train", TRAIN)
    body = {
        "domain": "medical",
        "base": "tiny:v1",
        "method": "lora",
        "overrides": ["r=2"],
        "args": {"steps": 3},
    }
    job = api.ok("POST", "/v1/jobs/train", 201, json=body)
    assert (job["kind"], job["status"], job["payload"]["args"]) == ("train", "queued", {"steps": 3})
    assert job["payload"]["dataset"] == "notes"

    assert [j["id"] for j in api.ok("GET", "/v1/jobs", params={"kind": "train", "status": "queued"})] == [
        job["id"]
    ]
    assert api.ok("GET", "/v1/jobs", params={"status": "running"}) == []
    assert api.ok("GET", "/v1/jobs", params={"kind": "dance"}, status=422)["error"]["code"] == "invalid_input"
    assert api.ok("GET", f"/v1/jobs/{job['id'][:6]}")["id"] == job["id"]

    cancelled = api.ok("POST", f"/v1/jobs/{job['id']}/cancel")
    assert cancelled["status"] == "cancelled"
    assert api.ok("POST", f"/v1/jobs/{job['id']}/cancel", 409)["error"]["code"] == "invalid_state"
    retried = api.ok("POST", f"/v1/jobs/{job['id']}/retry")
    assert (retried["status"], retried["attempts"]) == ("queued", 0)
    with transaction(api.registry.factory) as s:
        assert s.get(Job, job["id"]).status == "queued"


def test_audit_route(seeded: Api) -> None:
    events = seeded.ok("GET", "/v1/audit", params={"limit": 2})
    assert [e["action"] for e in events] == ["domain.create", "base.register"]
    assert [e["actor"] for e in events] == ["token:write", "token:admin"]  # bases by path: admin
    only = seeded.ok("GET", "/v1/audit", params={"subject": "medical"})
    assert [e["action"] for e in only] == ["domain.create"]
    assert seeded.ok("GET", "/v1/audit", params={"limit": 0}, status=422)["error"]["code"] == "invalid_input"


def test_every_error_is_one_json_shape(seeded: Api) -> None:
    api = seeded
    unknown = api.ok("GET", "/v1/nothing-here", 404)
    assert unknown == {"error": {"code": "not_found", "message": "no such route"}}
    assert api.ok("PATCH", "/v1/domains", 405)["error"]["code"] == "method_not_allowed"
    missing = api.ok("GET", "/v1/resolve", 422, params={"domain": "medical"})
    assert missing["error"]["code"] == "invalid_input" and "base" in missing["error"]["message"]
    extra = api.ok("POST", "/v1/domains", 422, json={"name": "x", "colour": "red"})
    assert extra["error"]["code"] == "invalid_input"
    not_json = api.ok("POST", "/v1/domains", 422, content=b"{", headers={"content-type": "application/json"})
    assert not_json["error"]["code"] == "invalid_input"
    nothing = api.ok("GET", "/v1/resolve", 404, params={"domain": "medical", "base": "tiny:v1"})
    assert nothing["error"]["message"] == "no patch for medical on tiny:v1: domain medical has no patches yet"
    bad_id = api.ok("GET", "/v1/patches/xyz!", 422)
    assert bad_id["error"]["code"] == "invalid_input"


def test_healthz_and_docs(api: Api) -> None:
    health = api.client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and len(health.json()["schema"]) > 0
    spec = api.client.get("/openapi.json").json()
    assert "/v1/patches/{patch_id}/download" in spec["paths"]
    assert "multipart/form-data" in spec["paths"]["/v1/patches"]["post"]["requestBody"]["content"]
    assert api.client.get("/docs").status_code == 200


def test_an_unexpected_failure_is_a_json_500(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_session: object, **_page: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("registry.services.domains.page_domains", broken)
    client = TestClient(api.client.app, raise_server_exceptions=False)
    response = client.get("/v1/domains", headers={"Authorization": f"Bearer {api.secrets['read']}"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "disk on fire" not in response.text
