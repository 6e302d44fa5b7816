"""Uploads: PEFT adapters and native patches, size limits counted on the stream, malformed input
refused with nothing stored and no temp file left behind."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import NothingWritten
from tests.registry.api.conftest import Api, jsonl, serve

BOUNDARY = "patchreg-test-boundary"


@pytest.fixture
def upload_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where upload temp files go during the test, to check that none is left."""
    path = tmp_path / "upload-tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def _peft_files(adapter: Path) -> dict[str, tuple[str, bytes]]:
    return {
        "adapter_model": ("adapter_model.safetensors", (adapter / "adapter_model.safetensors").read_bytes()),
        "adapter_config": ("adapter_config.json", (adapter / "adapter_config.json").read_bytes()),
    }


def _multipart(fields: dict[str, str], file_field: str, filename: str, data: bytes) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return b"".join(parts)


def _chunked(body: bytes, size: int = 4096) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked): only counting can catch it."""
    for i in range(0, len(body), size):
        yield body[i : i + size]


def test_peft_adapter_upload_is_converted(seeded: Api, adapters: dict[int, Path], upload_tmp: Path) -> None:
    data = {"domain": "medical", "base": "tiny:v1"}
    row = seeded.ok("POST", "/v1/patches", 201, data=data, files=_peft_files(adapters[64]))
    assert (row["method"], row["origin"], row["trainable_params"]) == ("lora", "imported", 2 * 64 * 2)
    assert seeded.ok("GET", f"/v1/patches/{row['id']}/compat", params={"base": "tiny:v2"})["export_rank"] == 2
    assert list(upload_tmp.iterdir()) == []


def test_refused_uploads_store_nothing(seeded: Api, adapters: dict[int, Path], upload_tmp: Path) -> None:
    api = seeded
    target = {"domain": "medical", "base": "tiny:v1"}
    cases = {
        "PEFT adapter of another shape": (target, _peft_files(adapters[96]), 422, "invalid_input"),
        "not safetensors": (
            target,
            {"patch": ("p.safetensors", b"plain text, no header")},
            422,
            "malformed_file",
        ),
        "safetensors but not a patch": (
            target,
            {"patch": ("a.safetensors", (adapters[64] / "adapter_model.safetensors").read_bytes())},
            422,
            "malformed_file",
        ),
        "half an adapter": (target, {"adapter_config": ("c.json", b"{}")}, 422, "invalid_input"),
        "no domain": ({"base": "tiny:v1"}, {"patch": ("p", b"x" * 64)}, 422, "invalid_input"),
        "unknown field": ({**target, "colour": "red"}, {"patch": ("p", b"x")}, 422, "invalid_input"),
        "unknown domain": ({**target, "domain": "law"}, _peft_files(adapters[64]), 404, "not_found"),
    }
    with NothingWritten(api.registry.engine, api.registry.store.root):
        for case, (data, files, status, code) in cases.items():
            response = api.post("/v1/patches", data=data, files=files)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), case
        misfit = api.post("/v1/patches", data=target, files=_peft_files(adapters[96])).json()["error"]
        assert "does not fit tiny:v1" in misfit["message"] and "96" in misfit["message"]
        bad_rows = jsonl({"text": "fine"}) + b'{"text": \n'
        form = {"domain": "medical", "name": "notes", "role": "train"}
        bad = api.post("/v1/datasets", data=form, files={"file": ("notes.jsonl", bad_rows)})
        assert bad.status_code == 422 and bad.json()["error"]["message"].startswith("notes.jsonl line 2: ")
        past = api.post(
            "/v1/datasets", data={**form, "available_until": "2001-01-01"}, files={"file": ("n", bad_rows)}
        )
        assert past.status_code == 422
        not_a_date = api.post(
            "/v1/datasets", data={**form, "available_until": "soon"}, files={"file": ("n", b"")}
        )
        assert "not a date" in not_a_date.json()["error"]["message"]
        json_body = api.post("/v1/patches", json=target)
        assert json_body.status_code == 422 and "multipart/form-data" in json_body.json()["error"]["message"]
        truncated = _multipart(target, "patch", "p.safetensors", b"x" * 100)[:-10]
        cut = api.post(
            "/v1/patches",
            content=truncated,
            headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        assert (cut.status_code, cut.json()["error"]["code"]) == (422, "malformed_file")
    assert list(upload_tmp.iterdir()) == []


def test_peft_upload_without_torch_is_unsupported(
    seeded: Api, adapters: dict[int, Path], patch_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("trainer.patch.peft_import", "trainer.patch.io"):
        monkeypatch.setitem(sys.modules, module, None)  # `import` now fails as if torch were missing
    data = {"domain": "medical", "base": "tiny:v1"}
    with NothingWritten(seeded.registry.engine, seeded.registry.store.root):
        refused = seeded.post("/v1/patches", data=data, files=_peft_files(adapters[64]))
    assert refused.status_code == 501
    assert refused.json()["error"]["code"] == "unsupported"
    assert "upload a patchreg patch file" in refused.json()["error"]["message"]
    assert seeded.upload_patch(patch_file).status_code == 201  # native patches need no torch


def test_size_limits_count_the_bytes_received(seeded: Api, patch_file: Path, upload_tmp: Path) -> None:
    size = patch_file.stat().st_size
    with serve(
        seeded.registry, seeded.secrets, api_max_upload_bytes=size // 2, api_max_json_bytes=256
    ) as api:
        with NothingWritten(api.registry.engine, api.registry.store.root):
            declared = api.upload_patch(patch_file)
            assert declared.status_code == 413
            assert declared.json()["error"]["code"] == "payload_too_large"
            assert "PATCHREG_API_MAX_UPLOAD_BYTES" in declared.json()["error"]["message"]
            body = _multipart(
                {"domain": "medical", "base": "tiny:v1"}, "patch", "p.safetensors", patch_file.read_bytes()
            )
            content_type = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
            streamed = api.post("/v1/patches", content=_chunked(body), headers=content_type)
            assert streamed.status_code == 413, streamed.text
            lying = api.post("/v1/patches", content=body, headers={**content_type, "content-length": "100"})
            assert lying.status_code == 413, lying.text
            form = {"domain": "medical", "name": "big", "role": "train"}
            dataset = api.post(
                "/v1/datasets", data=form, files={"file": ("big.jsonl", jsonl({"text": "y" * size}))}
            )
            assert dataset.status_code == 413
            long = {"name": "legal", "description": "x" * 300}
            assert api.post("/v1/domains", json=long).status_code == 413
            chunked_json = api.post(
                "/v1/domains",
                content=_chunked(b'{"name": "legal", "description": "' + b"x" * 300 + b'"}', 64),
                headers={"content-type": "application/json"},
            )
            assert chunked_json.status_code == 413
            assert chunked_json.json()["error"]["code"] == "payload_too_large"
        assert api.post("/v1/domains", json={"name": "legal", "description": "short"}).status_code == 201
    assert list(upload_tmp.iterdir()) == []
