"""Serving a stored blob over HTTP: a strong ETag (its sha256), conditional GET, one byte range;
and serving a directory as an uncompressed tar stream.

A blob is verified against its digest before the first byte goes out (the store hashes it), so a
corrupted artifact is refused with `corrupt_artifact` (503) and never served, in whole or in part;
HEAD verifies too, so it answers what GET would. A
request with several ranges is answered with the whole blob, which HTTP allows.
"""

from __future__ import annotations

import re
import shutil
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from core import inputs
from core.errors import RangeNotSatisfiable
from registry.store import ArtifactStore

CHUNK = 1 << 20
_RANGE = re.compile(r"^\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*$", re.IGNORECASE)


def etag(digest: str) -> str:
    return f'"{digest}"'


def _matches(header: str, tag: str) -> bool:
    """If-None-Match semantics: `*`, or any listed tag equal to ours (weak comparison)."""
    candidates = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in candidates or tag in candidates


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for one satisfiable range; None to serve the whole blob.

    Raises RangeNotSatisfiable when the single range asked for lies outside the blob. Headers this
    server does not handle (other units, several ranges, bad syntax) are ignored, as RFC 9110 allows.
    """
    match = _RANGE.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    # Positions past the end are all alike: saturate there (`int()` of 5000 digits would raise).
    if not first:  # suffix: the last N bytes
        length = inputs.decimal(last, size)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(size - length, 0), size - 1
    start = inputs.decimal(first, size)
    end = inputs.decimal(last, size) if last else size - 1
    if last and end < start:
        return None  # invalid syntax: ignored
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, min(end, size - 1)


def _chunks(f: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    with f:
        f.seek(start)
        while length > 0:
            chunk = f.read(min(CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk


def serve_blob(
    request: Request, store: ArtifactStore, digest: str, size: int, media_type: str, filename: str
) -> Response:
    tag = etag(digest)
    headers = {
        "ETag": tag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "no-cache",  # revalidate with If-None-Match: the 304 costs nothing
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and _matches(if_none_match, tag):
        return Response(status_code=304, headers={"ETag": tag, "Accept-Ranges": "bytes"})
    if request.method == "HEAD":
        store.local_path(digest)  # verified as GET does: HEAD never promises a blob GET refuses
        return Response(headers={**headers, "Content-Length": str(size)}, media_type=media_type)
    span = None
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if range_header is not None and (if_range is None or if_range.strip() == tag):
        span = parse_range(range_header, size)
    if span is None:
        f = store.open_verified(digest)
        return StreamingResponse(
            _chunks(f, 0, size), headers={**headers, "Content-Length": str(size)}, media_type=media_type
        )
    first, last = span
    f = open(store.local_path(digest), "rb")  # noqa: SIM115 - closed by _chunks
    return StreamingResponse(
        _chunks(f, first, last - first + 1),
        status_code=206,
        headers={
            **headers,
            "Content-Length": str(last - first + 1),
            "Content-Range": f"bytes {first}-{last}/{size}",
        },
        media_type=media_type,
    )


TAR_MEDIA_TYPE = "application/x-tar"


Member = tuple[Path, int, bytes]  # a file, its size, its tar header


def _tar_members(directory: Path) -> list[Member]:
    """(file, size, tar header) for every file under `directory`, by relative path."""
    members: list[Member] = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        info = tarfile.TarInfo(path.relative_to(directory).as_posix())
        stat = path.stat()
        info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o644
        members.append((path, stat.st_size, info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")))
    return members


def _tar_size(members: list[Member]) -> int:
    body = sum(len(header) + size + -size % tarfile.BLOCKSIZE for _, size, header in members)
    body += 2 * tarfile.BLOCKSIZE  # end of archive
    return body + -body % tarfile.RECORDSIZE  # as tarfile pads it


def _tar_chunks(members: list[Member], total: int, done: Callable[[], None]) -> Iterator[bytes]:
    sent = 0
    try:
        for path, size, header in members:
            yield header
            with open(path, "rb") as f:
                yield from _chunks(f, 0, size)
            pad = -size % tarfile.BLOCKSIZE
            if pad:
                yield bytes(pad)
            sent += len(header) + size + pad
        yield bytes(total - sent)
    finally:
        done()  # also when the client went away mid-stream


def serve_directory(directory: Path, filename: str, headers: dict[str, str], scratch: Path) -> Response:
    """Stream `directory`'s files as an uncompressed tar (names relative to it, so `tar -x -C DIR`
    recreates it), then remove `scratch`, the private temp directory that holds it."""

    def done() -> None:
        shutil.rmtree(scratch, ignore_errors=True)

    members = _tar_members(directory)
    total = _tar_size(members)
    return StreamingResponse(
        _tar_chunks(members, total, done),
        headers={
            **headers,
            "Content-Length": str(total),
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
        media_type=TAR_MEDIA_TYPE,
        background=BackgroundTask(done),
    )
