"""What the API tells a caller about the server: errors name the input, never the server's paths; a
job's traceback is for admins; a write token cannot probe the server's disk through base sources."""

from __future__ import annotations

from pathlib import Path

from registry.db import transaction
from registry.services import jobs
from tests.registry.api.conftest import Api
from worker.runner import _describe

SECRET_PATH = "/srv/secret/model.safetensors"


def _failed_job(api: Api) -> str:
    """A job whose worker hit an unexpected error naming a server path."""
    with transaction(api.registry.factory, "test") as s:
        job, _ = jobs.enqueue(s, "evaluate", {"patch_id": "abcd"})
    with transaction(api.registry.factory, "worker:w") as s:
        jobs.claim(s, "w", lease_seconds=60, kinds=("evaluate",))
    try:
        open(SECRET_PATH)  # noqa: SIM115 - raises: the file does not exist
    except OSError as exc:
        error = _describe(exc)
    with transaction(api.registry.factory, "worker:w") as s:
        jobs.fail(s, job.id, "w", error, retry=False)
    return job.id


def test_a_read_token_sees_a_one_line_job_error_and_an_admin_the_traceback(api: Api) -> None:
    job_id = _failed_job(api)
    for seen in (api.ok("GET", f"/v1/jobs/{job_id}"), api.ok("GET", "/v1/jobs")[0]):
        assert seen["status"] == "failed" and "\n" not in seen["error"]
        assert seen["error"].startswith("internal_error: unexpected FileNotFoundError")
        assert "/srv/secret" not in seen["error"] and seen["error_detail"] is None
    for event in api.ok("GET", "/v1/audit", params={"subject": job_id}):
        assert "/srv/secret" not in str(event["detail"]) and 'File "' not in str(event["detail"])

    admin = api.ok("GET", f"/v1/jobs/{job_id}", as_="admin")
    assert admin["error"] == api.ok("GET", f"/v1/jobs/{job_id}")["error"]
    assert SECRET_PATH in admin["error_detail"] and 'File "' in admin["error_detail"]
    assert SECRET_PATH in api.ok("GET", "/v1/jobs", as_="admin")[0]["error_detail"]


def test_a_write_token_cannot_register_a_base_from_a_server_path(api: Api, make_tiny_model) -> None:
    """Existing file, existing model, missing path: the same refusal, before anything is looked at."""
    model = make_tiny_model(seed=0)
    answers = []
    for source in ("/etc/passwd", str(model), "/no/such/dir", "relative/dir"):
        response = api.post("/v1/bases", json={"ref": "tiny:v1", "source": source})
        assert response.status_code == 403, response.text
        answers.append(response.json())
    assert all(a == answers[0] for a in answers)
    assert "admin" in answers[0]["error"]["message"] and "/etc" not in answers[0]["error"]["message"]
    assert api.get("/v1/bases").json() == []

    created = api.ok("POST", "/v1/bases", 201, json={"ref": "tiny:v1", "source": str(model)}, as_="admin")
    assert created["ref"] == "tiny:v1"


def test_an_admin_sees_no_server_path_of_the_store_either(api: Api) -> None:
    refused = api.post("/v1/bases", json={"ref": "tiny:v9", "source": "/no/such/dir"}, as_="admin")
    assert refused.status_code == 424 and "/no/such/dir" in refused.json()["error"]["message"]
    home = str(api.registry.home)
    inside = api.post(
        "/v1/bases", json={"ref": "tiny:v9", "source": f"{home}/artifacts/nothing"}, as_="admin"
    )
    assert inside.status_code == 424 and home not in inside.text
    assert inside.json()["error"]["message"].startswith("nothing: ")


def test_upload_errors_name_the_uploaded_file_not_the_spool(seeded: Api, adapters: dict[int, Path]) -> None:
    adapter = adapters[64]
    files = {
        "adapter_model": ("adapter_model.safetensors", (adapter / "adapter_model.safetensors").read_bytes()),
        "adapter_config": ("adapter_config.json", b"{not json"),
    }
    response = seeded.post("/v1/patches", data={"domain": "medical", "base": "tiny:v1"}, files=files)
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert message.startswith("adapter_config.json: not valid JSON"), message
    for leak in (str(seeded.registry.home), "spool-", "/tmp", "parts/"):
        assert leak not in response.text, leak

    bad = seeded.post(
        "/v1/patches",
        data={"domain": "medical", "base": "tiny:v1"},
        files={"patch": ("mine.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")},
    )
    assert bad.status_code == 422 and bad.json()["error"]["message"].startswith("mine.safetensors: ")
    assert str(seeded.registry.home) not in bad.text and "spool-" not in bad.text
