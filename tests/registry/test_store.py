from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from core.errors import CorruptArtifact, NotFound
from registry.store import LocalStore
from tests.helpers import blob_files


def test_put_is_content_addressed_and_deduplicated(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    data = b"hello patch" * 1000
    first = store.put_stream(io.BytesIO(data))
    second = store.put_stream(io.BytesIO(data))
    assert first.digest == hashlib.sha256(data).hexdigest()
    assert first.size == len(data)
    assert (first.created, second.created) == (True, False)
    assert blob_files(tmp_path / "store") == {f"sha256/{first.digest[:2]}/{first.digest}"}


def test_read_returns_the_bytes_and_copy_to_writes_them(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    src = tmp_path / "weights.bin"
    src.write_bytes(bytes(range(256)) * 5000)  # spans several read chunks
    blob = store.put_file(src)
    with store.open_verified(blob.digest) as f:
        assert f.read() == src.read_bytes()
    store.copy_to(blob.digest, tmp_path / "out" / "copy.bin")
    assert (tmp_path / "out" / "copy.bin").read_bytes() == src.read_bytes()


def test_a_corrupted_blob_is_never_served(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    blob = store.put_stream(io.BytesIO(b"original content"))
    path = tmp_path / "store" / "sha256" / blob.digest[:2] / blob.digest
    path.write_bytes(b"tampered content")
    with pytest.raises(CorruptArtifact, match="corrupt"):
        store.open_verified(blob.digest)
    with pytest.raises(CorruptArtifact):
        store.local_path(blob.digest)
    dest = tmp_path / "out" / "copy.bin"
    with pytest.raises(CorruptArtifact):
        store.copy_to(blob.digest, dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no partial file left beside it


def test_missing_blob_and_bad_digest_are_not_found(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    with pytest.raises(NotFound, match="missing"):
        store.open_verified("a" * 64)
    with pytest.raises(NotFound, match="not an artifact digest"):
        store.open_verified("../../etc/passwd")


def test_a_failed_upload_leaves_no_temp_file(tmp_path: Path) -> None:
    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def read(self, n: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError("connection reset")
            return b"x" * 1024

    store = LocalStore(tmp_path / "store")
    with pytest.raises(OSError, match="connection reset"):
        store.put_stream(Broken())  # type: ignore[arg-type]
    assert blob_files(tmp_path / "store") == set()


def test_delete_removes_the_blob(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    blob = store.put_stream(io.BytesIO(b"bye"))
    store.delete(blob.digest)
    assert not store.exists(blob.digest)


def test_verified_once_hashes_a_blob_once_until_its_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry.store import local

    store = LocalStore(tmp_path / "store")
    digest = store.put_stream(io.BytesIO(b"patch bytes")).digest
    calls: list[Path] = []
    real = local.sha256_file
    monkeypatch.setattr(local, "sha256_file", lambda p, on_bytes=None: calls.append(p) or real(p, on_bytes))
    for _ in range(3):
        store.local_path(digest)
    assert len(calls) == 3  # outside a scope every read hashes
    with store.verified_once():
        for _ in range(3):
            path = store.local_path(digest)
        assert len(calls) == 4
        path.chmod(0o644)
        path.write_bytes(b"tampered")  # a changed file is hashed again, and refused
        with pytest.raises(CorruptArtifact):
            store.local_path(digest)
    assert len(calls) == 5
