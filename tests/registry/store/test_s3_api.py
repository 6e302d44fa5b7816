"""End to end: `patchreg serve` with PATCHREG_STORE=s3://… registers a patch, keeps its bytes only
in the bucket, and serves them back whole and by range, refusing a corrupted object."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from tests.conftest import Registry
from tests.registry.api.conftest import make_tokens, patch_file, serve
from tests.s3_server import raw_client

__all__ = ["patch_file"]  # a fixture, imported for pytest


def test_a_registry_on_s3_registers_and_serves_a_patch(
    registry: Registry, s3_env: str, make_tiny_model, patch_file: Path
) -> None:
    data = patch_file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    with serve(registry, make_tokens(registry), store=f"s3://{s3_env}/e2e") as api:
        base = str(make_tiny_model(seed=0))
        api.ok("POST", "/v1/bases", 201, json={"ref": "tiny:v1", "source": base}, as_="admin")
        api.ok("POST", "/v1/domains", 201, json={"name": "medical"})
        patch = api.upload_patch(patch_file).json()
        assert patch["digest"] == digest

        keys = [o["Key"] for o in raw_client().list_objects_v2(Bucket=s3_env)["Contents"]]
        assert f"e2e/sha256/{digest[:2]}/{digest}" in keys
        assert not (registry.home / "artifacts").exists()  # nothing in the local default store

        url = f"/v1/patches/{patch['id']}/download"
        whole = api.get(url)
        assert whole.status_code == 200 and whole.content == data
        part = api.get(url, headers={"Range": "bytes=8-1007"})
        assert part.status_code == 206 and part.content == data[8:1008]

        shutil.rmtree(registry.home / "s3-cache")  # a fresh machine: only the bucket has the bytes
        tampered = data[:-1] + bytes([data[-1] ^ 0xFF])
        raw_client().put_object(Bucket=s3_env, Key=f"e2e/sha256/{digest[:2]}/{digest}", Body=tampered)
        for headers in ({}, {"Range": "bytes=0-15"}):
            response = api.get(url, headers=headers)
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "corrupt_artifact"
