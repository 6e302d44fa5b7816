"""Downloads: verified before they are moved into place, resumed with `Range` from a partial file,
and refused (leaving nothing behind) when the bytes or the ETag are wrong."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from client import Client
from client.download import download_blob, part_path
from client.transport import Transport
from core.errors import CorruptArtifact
from tests.client.conftest import Server
from tests.client.fakes import Reply, Seen, fake_server

Log = list[tuple[str, str | None, int]]  # (path, Range header, status) of each answered request


@pytest.fixture
def uploaded(client: Client, domain: str, patch_file: Path) -> tuple[str, bytes]:
    return client.upload_patch(patch_file, domain, "tiny:v1").id, patch_file.read_bytes()


@pytest.fixture
def recorded(server: Server) -> Iterator[tuple[Client, Log]]:
    log: Log = []

    def hook(response: httpx.Response) -> None:
        log.append((response.request.url.path, response.request.headers.get("range"), response.status_code))

    with server.client("read", event_hooks={"response": [hook]}) as c:
        yield c, log


def _downloads(log: Log) -> list[tuple[str | None, int]]:
    return [(rng, status) for path, rng, status in log if path.endswith("/download")]


def test_a_partial_file_is_resumed_with_range(
    recorded: tuple[Client, Log], uploaded: tuple[str, bytes], tmp_path: Path
) -> None:
    client, log = recorded
    patch_id, data = uploaded
    dest = tmp_path / "patch.safetensors"
    part = part_path(dest, hashlib.sha256(data).hexdigest())
    part.write_bytes(data[:1000])

    assert client.download_patch(patch_id, dest) == dest
    assert dest.read_bytes() == data and not part.exists()
    assert _downloads(log) == [("bytes=1000-", 206)]


def test_a_complete_partial_file_is_verified_without_downloading(
    recorded: tuple[Client, Log], uploaded: tuple[str, bytes], tmp_path: Path
) -> None:
    client, log = recorded
    patch_id, data = uploaded
    dest = tmp_path / "patch.safetensors"
    part_path(dest, hashlib.sha256(data).hexdigest()).write_bytes(data)
    client.download_patch(patch_id, dest)
    assert dest.read_bytes() == data and _downloads(log) == []


def test_a_corrupted_partial_file_is_discarded_and_downloaded_whole(
    recorded: tuple[Client, Log], uploaded: tuple[str, bytes], tmp_path: Path
) -> None:
    client, log = recorded
    patch_id, data = uploaded
    dest = tmp_path / "patch.safetensors"
    part = part_path(dest, hashlib.sha256(data).hexdigest())
    part.write_bytes(bytes(b ^ 0xFF for b in data[:1000]))  # the bytes we kept were wrong

    client.download_patch(patch_id, dest)
    assert dest.read_bytes() == data and not part.exists()
    assert _downloads(log) == [("bytes=1000-", 206), (None, 200)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patch.safetensors"]


DATA = bytes(range(256)) * 40
DIGEST = hashlib.sha256(DATA).hexdigest()


def _blob(body: bytes = DATA, tag: str = DIGEST) -> Reply:
    return Reply(200, body, {"ETag": f'"{tag}"', "Accept-Ranges": "bytes"})


def _get(url: str, dest: Path) -> Path:
    transport = Transport(url, "t", retries=2, backoff=0.01)
    try:
        return download_blob(transport, "/blob", dest, DIGEST, len(DATA))
    finally:
        transport.close()


@pytest.mark.parametrize(
    "reply",
    [_blob(tag="0" * 64), _blob(body=DATA[:-1] + b"\x00")],
    ids=["wrong-etag", "wrong-bytes"],
)
def test_a_wrong_blob_is_refused_and_nothing_is_left(reply: Reply, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "patch.safetensors"
    with fake_server(lambda _: reply) as (url, seen), pytest.raises(CorruptArtifact):
        _get(url, dest)
    assert len(seen) == 1
    assert list((tmp_path / "out").iterdir()) == []  # no file, no partial


def test_a_refused_download_leaves_an_existing_file_alone(tmp_path: Path) -> None:
    dest = tmp_path / "patch.safetensors"
    dest.write_bytes(b"the previous version")
    with fake_server(lambda _: _blob(body=b"x" * len(DATA))) as (url, _), pytest.raises(CorruptArtifact):
        _get(url, dest)
    assert dest.read_bytes() == b"the previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["patch.safetensors"]


def test_a_connection_lost_mid_body_is_resumed_from_the_bytes_received(tmp_path: Path) -> None:
    def script(request: Seen) -> Reply:
        if "range" not in request.headers:
            return Reply(200, DATA, {"ETag": f'"{DIGEST}"'}, cut_after=3000)
        first = int(request.headers["range"].removeprefix("bytes=").rstrip("-"))
        assert request.headers["if-range"] == f'"{DIGEST}"'
        headers = {"ETag": f'"{DIGEST}"', "Content-Range": f"bytes {first}-{len(DATA) - 1}/{len(DATA)}"}
        return Reply(206, DATA[first:], headers)

    dest = tmp_path / "patch.safetensors"
    with fake_server(script) as (url, seen):
        _get(url, dest)
    assert dest.read_bytes() == DATA
    assert [r.headers.get("range") for r in seen] == [None, "bytes=3000-"]


def test_a_fetch_that_does_not_verify_is_refused(tmp_path: Path) -> None:
    """A native fetch whose patch file does not match the manifest's digest never lands."""
    import io
    import json
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in [
            ("patch.safetensors", b"not the patch"),
            ("patchreg.json", json.dumps({"format": "native", "digest": DIGEST}).encode()),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    body = buffer.getvalue()
    tar_reply = Reply(200, body, {"Content-Type": "application/x-tar"})
    with fake_server(lambda _: tar_reply) as (url, _), Client(url, "t") as c, pytest.raises(CorruptArtifact):
        c.fetch("medical", "tiny:v1", tmp_path / "adapter")
    assert list(tmp_path.iterdir()) == []
