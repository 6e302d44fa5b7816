"""Downloads that never leave a wrong file where the caller looks: stream into a hidden temp file
beside the destination, check the sha256 (the server's `ETag`), then rename it into place.

A patch download that is interrupted keeps its partial file (named after the digest it is for),
and the next attempt, in this call or a later one, asks only for the missing bytes with `Range`
and `If-Range`. A resumed file that does not verify is discarded and downloaded whole once more;
a whole file that does not verify is refused with `CorruptArtifact`, and nothing is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from client.transport import Transport
from core.atomic import atomic_output_dir, fsync_dir
from core.errors import CorruptArtifact
from core.fetch import MANIFEST, NATIVE_FILE

CHUNK = 1 << 20


def part_path(dest: Path, digest: str) -> Path:
    """Where the partial download of `digest` for `dest` lives: beside it, hidden, per digest."""
    return dest.parent / f".{dest.name}.{digest[:16]}.part"


def _etag_digest(response: httpx.Response) -> str | None:
    tag = response.headers.get("etag")
    return None if tag is None else tag.strip().removeprefix("W/").strip('"')


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _refuse(part: Path, message: str, **detail: Any) -> CorruptArtifact:
    part.unlink(missing_ok=True)
    return CorruptArtifact(message, **detail)


def _receive(transport: Transport, path: str, part: Path, digest: str, size: int) -> bool:
    """Bring `part` to `size` bytes from the server, resuming from what it holds; True if it was
    resumed (some bytes came from an earlier attempt)."""
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    if have == size:
        return have > 0
    headers = {"Range": f"bytes={have}-", "If-Range": f'"{digest}"'} if have else {}
    with transport.stream("GET", path, headers=headers) as response:
        served = _etag_digest(response)
        if served is not None and served != digest:
            raise _refuse(part, f"the server sent blob {served}, expected {digest}", expected=digest)
        if response.status_code == 206:
            content_range = response.headers.get("content-range", "")
            if not content_range.startswith(f"bytes {have}-"):
                raise _refuse(part, f"asked for bytes {have}- and got {content_range!r}")
        else:
            have = 0  # a whole answer: start over
        with open(part, "ab" if have else "wb") as f:
            for chunk in response.iter_bytes():
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    return have > 0


def download_blob(transport: Transport, path: str, dest: Path, digest: str, size: int) -> Path:
    """GET `path` (a blob of `digest`, `size` bytes) into `dest`, verified, resuming a partial file.

    A connection lost mid-body is resumed from the bytes received, up to the transport's retries.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest, digest)
    lost, restarted = 0, False
    while True:
        try:
            resumed = _receive(transport, path, part, digest, size)
        except httpx.TransportError:
            if lost >= transport.retries:
                raise
            time.sleep(transport.delay(lost))
            lost += 1
            continue
        got = _sha256(part) if part.exists() else ""
        if got == digest:
            break
        part.unlink(missing_ok=True)
        if resumed and not restarted:  # the earlier bytes were bad: once more, whole
            restarted = True
            continue
        raise CorruptArtifact(
            f"downloaded {path} does not match its sha256: expected {digest}, got {got}; nothing was kept",
            expected=digest,
            got=got,
        )
    os.replace(part, dest)
    fsync_dir(dest.parent)
    return dest


def fetch_directory(transport: Transport, params: dict[str, Any], dest: Path) -> Path:
    """GET /v1/fetch (a tar of the fetch directory) into the new directory `dest`.

    The tar is spooled beside `dest`, its length checked, and extracted (only plain files, no path
    outside the directory) into a temp directory that is renamed into place; a native patch file
    is also checked against the manifest's digest. An existing non-empty `dest` is refused first.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    spool = dest.parent / f".{dest.name}.fetch-{uuid.uuid4().hex[:12]}.tar"
    try:
        with atomic_output_dir(dest) as stage:
            with transport.stream("GET", "/v1/fetch", params=params) as response, open(spool, "wb") as f:
                expected = response.headers.get("content-length")
                for chunk in response.iter_bytes():
                    f.write(chunk)
                received = f.tell()
            if expected is not None and int(expected) != received:
                raise CorruptArtifact(f"the fetch was cut short: {received} of {expected} bytes")
            with tarfile.open(spool) as tar:
                tar.extractall(stage, filter="data")
            _check_native(stage)
        return dest
    finally:
        spool.unlink(missing_ok=True)


def _check_native(directory: Path) -> None:
    manifest_file = directory / MANIFEST
    if not manifest_file.is_file():
        raise CorruptArtifact(f"the fetch has no {MANIFEST}")
    manifest = json.loads(manifest_file.read_text())
    native = directory / NATIVE_FILE
    if manifest.get("format") == "native" and native.is_file():
        got, expected = _sha256(native), manifest.get("digest")
        if got != expected:
            raise CorruptArtifact(f"fetched {NATIVE_FILE} does not match its sha256 {expected}: got {got}")
