"""Content-addressed artifact store: blobs named by their sha256, verified on every read.

`ArtifactStore` is the whole interface callers see; `LocalStore` keeps blobs in a directory,
`S3Store` (`registry.store.s3`, boto3 imported only when used) in an S3-compatible bucket.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol

from registry.store.local import BlobFile, LocalStore, sha256_file
from registry.store.scratch import Leftover, Scratch

__all__ = [
    "ArtifactStore",
    "BlobFile",
    "Leftover",
    "LocalStore",
    "Scratch",
    "StoredBlob",
    "open_store",
    "sha256_file",
]


class StoredBlob(NamedTuple):
    digest: str
    size: int
    created: bool  # False when identical content was already stored


class ArtifactStore(Protocol):
    # Temp space on this machine for writes in progress, spools and exports (swept at start).
    scratch: Scratch

    def put_file(self, path: Path) -> StoredBlob: ...

    def put_stream(self, stream: BinaryIO) -> StoredBlob: ...

    def open_verified(self, digest: str) -> BinaryIO: ...

    def copy_to(self, digest: str, dest: Path) -> None: ...

    def local_path(self, digest: str) -> Path: ...

    def exists(self, digest: str) -> bool: ...

    def delete(self, digest: str) -> None: ...

    def blobs(self) -> Iterator[BlobFile]: ...

    def delete_if_older(self, digest: str, cutoff: float) -> bool: ...

    def verified_once(self) -> AbstractContextManager[None]: ...


def open_store(root: Path, url: str | None = None) -> ArtifactStore:
    """The store at `url` (`s3://bucket/prefix`, with `root` as its local cache), else at `root`."""
    if url is not None:
        from registry.store.s3 import S3Store

        return S3Store.from_url(url, root)
    return LocalStore(root)
