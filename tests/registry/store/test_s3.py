"""The S3 store against a real S3-compatible server: what only an object store can get wrong."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from pathlib import Path

import pytest

from core.errors import CorruptArtifact
from registry.db import transaction
from registry.services import artifacts
from registry.services import gc as gc_service
from registry.store import open_store
from registry.store.s3 import S3Store, parse_url
from tests.conftest import Registry
from tests.s3_server import raw_client

HOUR = 3600.0


def test_urls_name_a_bucket_and_a_prefix() -> None:
    assert parse_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert parse_url("s3://bucket") == ("bucket", "")


def test_blobs_live_under_content_addressed_keys(s3_store: S3Store) -> None:
    digest = s3_store.put_stream(io.BytesIO(b"adapter")).digest
    keys = [o["Key"] for o in raw_client().list_objects_v2(Bucket=s3_store.bucket)["Contents"]]
    assert keys == [f"team/patches/sha256/{digest[:2]}/{digest}"]


def test_a_large_blob_goes_up_in_parts(s3_store: S3Store, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(1 << 20) * 20)  # 20 MiB: three parts of 8 MiB
    blob = s3_store.put_file(src)
    head = raw_client().head_object(Bucket=s3_store.bucket, Key=s3_store.key(blob.digest))
    assert head["ETag"].strip('"').endswith("-3")  # a multipart object's ETag counts its parts
    assert hashlib.sha256(s3_store.local_path(blob.digest).read_bytes()).hexdigest() == blob.digest
    assert s3_store.scratch.leftovers(0) == []  # the spool file went


def _corrupt(store: S3Store, digest: str, content: bytes) -> None:
    raw_client().put_object(Bucket=store.bucket, Key=store.key(digest), Body=content)


def test_a_corrupted_object_is_never_served(s3_store: S3Store, tmp_path: Path) -> None:
    original = b"original content " * 100_000  # 1.7 MB: more than one read chunk
    digest = s3_store.put_stream(io.BytesIO(original)).digest
    tampered = original[:-1] + b"!"
    _corrupt(s3_store, digest, tampered)
    with pytest.raises(CorruptArtifact, match="corrupt"):
        s3_store.open_verified(digest)
    with pytest.raises(CorruptArtifact):
        s3_store.local_path(digest)
    dest = tmp_path / "out" / "copy.bin"
    with pytest.raises(CorruptArtifact):
        s3_store.copy_to(digest, dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    assert list((tmp_path / "s3-cache").rglob("sha256/*/*")) == []  # never cached
    # Streaming: the reader raises before the caller has the last byte of the tampered object.
    received = bytearray()
    with pytest.raises(CorruptArtifact), s3_store.stream_verified(digest) as reader:
        while chunk := reader.read(64 * 1024):
            received += chunk
    assert len(received) < len(tampered) and tampered.startswith(bytes(received))


def test_concurrent_puts_of_one_digest_leave_one_valid_object(s3_store: S3Store) -> None:
    data = os.urandom(3 << 20)
    results, errors = [], []

    def put() -> None:
        try:
            results.append(s3_store.put_stream(io.BytesIO(data)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    digest = hashlib.sha256(data).hexdigest()
    assert {r.digest for r in results} == {digest} and any(r.created for r in results)
    assert [b.digest for b in s3_store.blobs()] == [digest]
    with s3_store.stream_verified(digest) as reader:
        assert reader.read() == data


def _killed_upload(store: S3Store) -> tuple[str, str]:
    """A writer that started a multipart upload of a blob, sent one part, and died."""
    client = raw_client()
    key = store.key("b" * 64)
    upload = client.create_multipart_upload(Bucket=store.bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=store.bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"p" * (5 << 20))
    return key, upload


def test_a_killed_multipart_upload_is_invisible_and_swept(s3_store: S3Store) -> None:
    _key, upload = _killed_upload(s3_store)
    assert not s3_store.exists("b" * 64) and list(s3_store.blobs()) == []
    assert s3_store.scratch.sweep(HOUR) == []  # young: its writer may still be sending parts
    assert raw_client().list_multipart_uploads(Bucket=s3_store.bucket).get("Uploads")
    swept = s3_store.scratch.sweep(0)
    assert [(lo.path.name, lo.size) for lo in swept] == [(upload, 5 << 20)]
    assert not raw_client().list_multipart_uploads(Bucket=s3_store.bucket).get("Uploads")


def test_gc_collects_an_orphan_and_a_dead_upload_never_a_referenced_blob(
    registry: Registry, s3_store: S3Store, tmp_path: Path
) -> None:
    src = tmp_path / "kept.bin"
    src.write_bytes(b"referenced content")
    with transaction(registry.factory, "test") as s:
        kept = artifacts.store_file(s, s3_store, src, "application/octet-stream").digest
    orphan = s3_store.put_stream(io.BytesIO(b"nobody references me")).digest
    _, upload = _killed_upload(s3_store)
    with transaction(registry.factory, "test") as s:
        young = gc_service.collect(s, s3_store, older_than=HOUR, dry_run=False)
    assert young.removed == [] and {i.name for i in young.kept} >= {orphan}
    with transaction(registry.factory, "test") as s:
        report = gc_service.collect(s, s3_store, older_than=0, dry_run=False)
    removed = {(i.kind, i.name.rsplit("/", 1)[-1]) for i in report.removed}
    assert removed == {("blob", orphan), ("temp", upload)}
    assert s3_store.exists(kept) and not s3_store.exists(orphan)
    assert [b.digest for b in s3_store.blobs()] == [kept]


def test_a_failed_transaction_discards_its_blob(
    registry: Registry, s3_store: S3Store, tmp_path: Path
) -> None:
    src = tmp_path / "doomed.bin"
    src.write_bytes(b"written by a transaction that fails")
    with pytest.raises(RuntimeError), transaction(registry.factory, "test") as s:
        artifacts.store_file(s, s3_store, src, "application/octet-stream")
        raise RuntimeError("boom")
    assert list(s3_store.blobs()) == []


def test_restoring_content_refreshes_it(s3_store: S3Store) -> None:
    digest = s3_store.put_stream(io.BytesIO(b"coming back")).digest
    (first,) = s3_store.blobs()
    time.sleep(1.1)  # LastModified counts whole seconds
    assert s3_store.put_stream(io.BytesIO(b"coming back")).created is False
    (second,) = s3_store.blobs()
    assert second.digest == digest and second.mtime > first.mtime
    assert s3_store.delete_if_older(digest, cutoff=first.mtime) is False


def test_open_store_picks_the_backend_from_the_url(s3_env: str, tmp_path: Path) -> None:
    store = open_store(tmp_path / "cache", f"s3://{s3_env}/p")
    assert isinstance(store, S3Store) and (store.bucket, store.prefix) == (s3_env, "p")
