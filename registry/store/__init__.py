"""Content-addressed artifact store: blobs named by their sha256, verified on every read.

`ArtifactStore` is the whole interface callers see; `LocalStore` keeps blobs in a directory. An
S3-compatible backend implements the same methods and nothing else changes.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol

from registry.store.local import LocalStore, sha256_file

__all__ = ["ArtifactStore", "LocalStore", "StoredBlob", "open_store", "sha256_file"]


class StoredBlob(NamedTuple):
    digest: str
    size: int
    created: bool  # False when identical content was already stored


class ArtifactStore(Protocol):
    def put_file(self, path: Path) -> StoredBlob: ...

    def put_stream(self, stream: BinaryIO) -> StoredBlob: ...

    def open_verified(self, digest: str) -> BinaryIO: ...

    def copy_to(self, digest: str, dest: Path) -> None: ...

    def local_path(self, digest: str) -> Path: ...

    def exists(self, digest: str) -> bool: ...

    def delete(self, digest: str) -> None: ...

    def verified_once(self) -> AbstractContextManager[None]: ...


def open_store(root: Path) -> ArtifactStore:
    return LocalStore(root)
