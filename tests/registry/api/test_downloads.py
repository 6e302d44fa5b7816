"""Downloads: the bytes match their sha256 (the ETag), ranges, conditional requests, corrupt blobs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from core.errors import RangeNotSatisfiable
from registry.api.downloads import parse_range
from tests.registry.api.conftest import Api


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", (0, 0)),
        ("bytes=10-19", (10, 19)),
        ("bytes=90-", (90, 99)),
        ("bytes=90-500", (90, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-500", (0, 99)),
        ("BYTES = 5 - 6", (5, 6)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole blob
        ("bytes=9-3", None),  # invalid: ignored
        ("items=0-5", None),
        ("bytes=-", None),
    ],
)
def test_parse_range(header: str, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


@pytest.fixture
def uploaded(seeded: Api, patch_file: Path) -> tuple[Api, dict, bytes]:
    response = seeded.upload_patch(patch_file)
    assert response.status_code == 201
    return seeded, response.json(), patch_file.read_bytes()


def test_download_whole_ranged_and_conditional(uploaded: tuple[Api, dict, bytes]) -> None:
    api, patch, data = uploaded
    url = f"/v1/patches/{patch['id']}/download"
    digest = hashlib.sha256(data).hexdigest()
    tag = f'"{digest}"'

    whole = api.get(url)
    assert whole.status_code == 200
    assert hashlib.sha256(whole.content).hexdigest() == digest == patch["digest"]
    assert whole.headers["ETag"] == tag and whole.headers["Accept-Ranges"] == "bytes"
    assert int(whole.headers["Content-Length"]) == len(data) == patch["size"]

    part = api.get(url, headers={"Range": "bytes=8-1007"})
    assert part.status_code == 206 and part.content == data[8:1008]
    assert part.headers["Content-Range"] == f"bytes 8-1007/{len(data)}"
    assert part.headers["Content-Length"] == "1000"
    tail = api.get(url, headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == data[-16:]
    rest = api.get(url, headers={"Range": f"bytes={len(data) - 5}-"})
    assert rest.content == data[-5:]

    beyond = api.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(data)}"
    assert beyond.json()["error"]["code"] == "range_not_satisfiable"

    assert api.get(url, headers={"Range": "bytes=0-1,4-5"}).content == data  # several ranges: all of it
    stale = api.get(url, headers={"Range": "bytes=0-9", "If-Range": '"0000"'})
    assert stale.status_code == 200 and stale.content == data  # the range was for another version
    fresh = api.get(url, headers={"Range": "bytes=0-9", "If-Range": tag})
    assert fresh.status_code == 206 and fresh.content == data[:10]

    cached = api.get(url, headers={"If-None-Match": tag})
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["ETag"] == tag
    assert api.get(url, headers={"If-None-Match": f'"other", W/{tag}'}).status_code == 304
    assert api.get(url, headers={"If-None-Match": '"other"'}).status_code == 200

    head = api.request("HEAD", url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(data)) and head.headers["ETag"] == tag

    assert api.ok("GET", "/v1/patches/abcdef123456/download", 404)["error"]["code"] == "not_found"


def test_a_corrupt_blob_is_never_served(uploaded: tuple[Api, dict, bytes]) -> None:
    api, patch, data = uploaded
    blob = api.registry.store.root / "sha256" / patch["digest"][:2] / patch["digest"]
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    url = f"/v1/patches/{patch['id']}/download"
    for headers in ({}, {"Range": "bytes=0-15"}):
        response = api.get(url, headers=headers)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "corrupt_artifact"
    head = api.request("HEAD", url)  # HEAD verifies too: it never promises what GET refuses
    assert head.status_code == 503 and head.content == b""
