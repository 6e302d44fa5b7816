"""Bases registered from `s3://bucket/path`, against the real S3-compatible test server: the
recorded revision, the verified cache, and every way a download is refused."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from core.errors import CorruptArtifact, InvalidInput, SourceUnavailable, StoreUnavailable
from registry.fingerprint import fingerprint_model_dir
from registry.services import bases
from registry.sources import resolve_source
from registry.store.s3 import S3Store
from tests.conftest import Registry
from tests.s3_server import raw_client


def upload_model(bucket: str, model_dir: Path, path: str = "models/tiny") -> str:
    client = raw_client()
    for file in sorted(model_dir.iterdir()):
        client.upload_file(str(file), bucket, f"{path}/{file.name}")
    client.put_object(Bucket=bucket, Key=f"{path}/original/consolidated.safetensors", Body=b"x" * 64)
    return f"s3://{bucket}/{path}"


def leftovers(cache: Path) -> list[Path]:
    return [p for p in cache.rglob(".*") if p.name != ".patchreg-verified"] if cache.exists() else []


def test_a_folder_resolves_to_a_verified_revision_that_later_needs_no_request(
    s3_env: str, make_tiny_model, tmp_path: Path
) -> None:
    model = make_tiny_model(seed=0)
    source = upload_model(s3_env, model)
    cache = tmp_path / "cache"

    first = resolve_source(source, cache_root=cache)
    assert first.uri == f"{source}@{first.revision}" and len(first.revision or "") == 40
    assert sorted(p.name for p in first.path.iterdir() if p.name != ".patchreg-verified") == sorted(
        p.name for p in model.iterdir()
    )  # the model's own files, not the subfolder
    assert fingerprint_model_dir(first.path).weights_digest == fingerprint_model_dir(model).weights_digest

    raw_client().delete_object(Bucket=s3_env, Key="models/tiny/config.json")  # S3 no longer has it
    again = resolve_source(first.uri, cache_root=cache, local_only=True)
    assert again.path == first.path and again.uri == first.uri  # served from the cache alone


def test_a_changed_folder_is_refused_and_nothing_is_cached(
    s3_env: str, make_tiny_model, tmp_path: Path
) -> None:
    source = upload_model(s3_env, make_tiny_model(seed=0))
    recorded = resolve_source(source, cache_root=tmp_path / "first").uri
    other = make_tiny_model(seed=1) / "model.safetensors"
    raw_client().upload_file(str(other), s3_env, "models/tiny/model.safetensors")

    with pytest.raises(SourceUnavailable, match="changed since it was registered"):
        resolve_source(recorded, cache_root=tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists() or not any((tmp_path / "fresh").rglob("*.safetensors"))


def test_a_download_must_match_the_recorded_weights_digest(
    s3_env: str, make_tiny_model, tmp_path: Path
) -> None:
    source = upload_model(s3_env, make_tiny_model(seed=0))
    cache = tmp_path / "cache"
    with pytest.raises(CorruptArtifact, match="the registry recorded"):
        resolve_source(source, cache_root=cache, weights_digest="0" * 64)
    assert not any(cache.rglob("*.safetensors")) and not leftovers(cache)

    good = resolve_source(source, cache_root=cache)  # registering: the files set the record
    with pytest.raises(CorruptArtifact, match="will not be used"):  # a cached copy is checked too
        resolve_source(good.uri, cache_root=cache, weights_digest="0" * 64, local_only=True)


def test_bad_sources_get_one_line_errors(s3_env: str, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(InvalidInput, match="expected s3://BUCKET/PATH"):
        resolve_source("s3://only-a-bucket", cache_root=tmp_path)
    with pytest.raises(SourceUnavailable, match=r"no config\.json"):
        resolve_source(f"s3://{s3_env}/nothing/here", cache_root=tmp_path)
    with pytest.raises(SourceUnavailable, match="NoSuchBucket"):
        resolve_source("s3://no-such-bucket-anywhere/models/x", cache_root=tmp_path)
    with pytest.raises(SourceUnavailable, match="not in this machine's base cache"):
        resolve_source(f"s3://{s3_env}/models/tiny@{'a' * 40}", cache_root=tmp_path, local_only=True)

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(SourceUnavailable, match="unavailable: Could not connect") as caught:
        resolve_source(f"s3://{s3_env}/models/tiny", cache_root=tmp_path)
    assert "\n" not in caught.value.message
    with pytest.raises(StoreUnavailable, match="unavailable: Could not connect"):
        S3Store(s3_env, "team", tmp_path / "store-cache").exists("a" * 64)


def test_a_base_registered_from_s3_is_fetched_and_verified_on_another_machine(
    registry: Registry, s3_env: str, make_tiny_model, tmp_path: Path, monkeypatch
) -> None:
    model = make_tiny_model(seed=0)
    source = upload_model(s3_env, model)
    monkeypatch.setenv("PATCHREG_BASE_CACHE_DIR", str(tmp_path / "api-cache"))
    with registry.factory.begin() as s:
        row = bases.register_base(s, "tiny:v1", source)
    assert row.source_uri.startswith(f"{source}@") and row.revision == row.source_uri.rpartition("@")[2]
    assert row.weights_digest == fingerprint_model_dir(model).weights_digest

    monkeypatch.setenv("PATCHREG_BASE_CACHE_DIR", str(tmp_path / "worker-cache"))  # another machine
    with registry.factory.begin() as s:
        files = bases.model_dir(s, "tiny:v1")
    assert files.is_relative_to(tmp_path / "worker-cache")
    assert fingerprint_model_dir(files).weights_digest == row.weights_digest
