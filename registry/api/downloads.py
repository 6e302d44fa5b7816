"""Serving a stored blob over HTTP: a strong ETag (its sha256), conditional GET, one byte range.

A blob is verified against its digest before the first byte goes out (the store hashes it), so a
corrupted artifact is refused with `corrupt_artifact` and never served, in whole or in part. A
request with several ranges is answered with the whole blob, which HTTP allows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from core.errors import RangeNotSatisfiable
from registry.store import ArtifactStore

CHUNK = 1 << 20
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


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
    if not first:  # suffix: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(size - length, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
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
