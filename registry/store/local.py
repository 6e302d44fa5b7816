"""Local-directory backend: `<root>/sha256/ab/abcdef…`, written atomically, read verified."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from core.atomic import fsync_dir
from core.errors import CorruptArtifact, NotFound
from registry.store.scratch import Scratch

if TYPE_CHECKING:
    from registry.store import StoredBlob

CHUNK = 1 << 20
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def _touch(path: Path) -> bool:
    """Refresh an existing file's mtime; False if it does not exist (or vanished meanwhile)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except OSError:  # a read-only store: it exists, and it cannot be collected from here either
        return path.exists()
    return True


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """Streamed sha256: never holds more than one chunk of a weight file in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return h.hexdigest()


class BlobFile(NamedTuple):
    digest: str
    size: int
    mtime: float


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.scratch = Scratch(self.root / "tmp")
        # Inside `verified_once()`: digest -> (inode, size, mtime) of the file when it hashed
        # right. Outside it (None), every read hashes.
        self._verified: dict[str, tuple[int, int, int]] | None = None

    @contextmanager
    def verified_once(self) -> Iterator[None]:
        """Within this block each blob is hashed on its first read only (while its file is
        unchanged): a worker's job reads one patch three times and hashes it once."""
        self._verified = {}
        try:
            yield
        finally:
            self._verified = None

    def _path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise NotFound(f"not an artifact digest: {digest!r}")
        return self.root / "sha256" / digest[:2] / digest

    def put_file(self, path: Path) -> StoredBlob:
        with open(path, "rb") as f:
            return self.put_stream(f)

    def put_stream(self, stream: BinaryIO) -> StoredBlob:
        """Copy to a temp file while hashing, fsync, then rename into place (atomic on POSIX).

        A blob that already exists has its mtime refreshed: `gc` keeps blobs younger than its age
        guard, so content a transaction is about to reference again is never collected under it.
        """
        from registry.store import StoredBlob

        h, size = hashlib.sha256(), 0
        fd, tmp_name = self.scratch.mkstemp("upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            final = self._path(digest)
            if _touch(final):
                os.unlink(tmp_name)
                return StoredBlob(digest, size, created=False)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, final)
            fsync_dir(final.parent)
            return StoredBlob(digest, size, created=True)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

    def _verify(self, digest: str) -> Path:
        path = self._path(digest)
        if not path.exists():
            raise NotFound(f"artifact {digest[:12]} is missing from the store")
        stat = path.stat()
        seen = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if self._verified is not None and self._verified.get(digest) == seen:
            return path
        actual = sha256_file(path)
        if actual != digest:
            raise CorruptArtifact(
                f"artifact {digest[:12]} is corrupt (content hashes to {actual[:12]}); it will not be served"
            )
        if self._verified is not None:
            self._verified[digest] = seen
        return path

    def open_verified(self, digest: str) -> BinaryIO:
        """Hash the whole blob first, then hand it out: a corrupted blob is never served."""
        return open(self._verify(digest), "rb")

    def copy_to(self, digest: str, dest: Path) -> None:
        """Copy out, hashing as we go; the destination appears only if the content matched."""
        path = self._path(digest)
        if not path.exists():
            raise NotFound(f"artifact {digest[:12]} is missing from the store")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        try:
            h = hashlib.sha256()
            with open(path, "rb") as src, os.fdopen(fd, "wb") as out:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != digest:
                raise CorruptArtifact(f"artifact {digest[:12]} is corrupt; it will not be served")
            os.replace(tmp_name, dest)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

    def exists(self, digest: str) -> bool:
        return self._path(digest).exists()

    def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)

    def blobs(self) -> Iterator[BlobFile]:
        """Every stored blob with its size and mtime (the last time it was written or re-stored)."""
        for path in sorted((self.root / "sha256").glob("*/*")):
            if not _DIGEST.match(path.name):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            yield BlobFile(path.name, stat.st_size, stat.st_mtime)

    def delete_if_older(self, digest: str, cutoff: float) -> bool:
        """Delete a blob unless it was written or re-stored after `cutoff` (epoch seconds)."""
        path = self._path(digest)
        try:
            if path.stat().st_mtime >= cutoff:
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def local_path(self, digest: str) -> Path:
        """A verified path for readers that need a file (safetensors memory-maps its input)."""
        return self._verify(digest)
