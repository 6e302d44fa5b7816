"""What every `ArtifactStore` promises, run against the local directory and the S3 server alike."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from core.errors import NotFound
from registry.store import ArtifactStore, LocalStore


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    s3: ArtifactStore = request.getfixturevalue("s3_store")
    return s3


def test_put_is_content_addressed_and_deduplicated(store: ArtifactStore) -> None:
    data = b"hello patch" * 1000
    first = store.put_stream(io.BytesIO(data))
    second = store.put_stream(io.BytesIO(data))
    assert first.digest == hashlib.sha256(data).hexdigest() and first.size == len(data)
    assert (first.created, second.created) == (True, False)
    assert [b.digest for b in store.blobs()] == [first.digest]


def test_round_trip_through_every_reader(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(bytes(range(256)) * 20000)  # 5 MB: spans several read chunks
    blob = store.put_file(src)
    with store.open_verified(blob.digest) as f:
        assert f.read() == src.read_bytes()
    assert store.local_path(blob.digest).read_bytes() == src.read_bytes()
    store.copy_to(blob.digest, tmp_path / "out" / "copy.bin")
    assert (tmp_path / "out" / "copy.bin").read_bytes() == src.read_bytes()
    with store.verified_once():
        assert store.local_path(blob.digest).stat().st_size == blob.size


def test_missing_and_bad_digests_are_not_found(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="missing"):
        store.open_verified("a" * 64)
    with pytest.raises(NotFound, match="missing"):
        store.copy_to("a" * 64, tmp_path / "x")
    with pytest.raises(NotFound, match="not an artifact digest"):
        store.open_verified("../../etc/passwd")
    assert not store.exists("a" * 64)


def test_a_failed_upload_leaves_nothing(store: ArtifactStore) -> None:
    class Broken(io.RawIOBase):
        calls = 0

        def read(self, n: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError("connection reset")
            return b"x" * 1024

    with pytest.raises(OSError, match="connection reset"):
        store.put_stream(Broken())  # type: ignore[arg-type]
    assert list(store.blobs()) == [] and store.scratch.leftovers(0) == []


def test_delete_and_delete_if_older(store: ArtifactStore) -> None:
    a = store.put_stream(io.BytesIO(b"bye")).digest
    b = store.put_stream(io.BytesIO(b"stay")).digest
    store.delete(a)
    assert not store.exists(a) and store.exists(b)
    assert store.delete_if_older(b, cutoff=0) is False  # written after the cutoff: kept
    assert store.delete_if_older(b, cutoff=4e9) is True and not store.exists(b)
    assert store.delete_if_older(b, cutoff=4e9) is False  # already gone
