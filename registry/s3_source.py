"""Base model files in object storage: `s3://bucket/path[@revision]`, cached like the Hub's.

A base's folder is listed, never trusted: its *revision* is a digest of what the listing says (each
model file's name, ETag and size), so a file uploaded again gives a new revision, as a new commit
does for an hf:// source. Registration records `s3://bucket/path@<revision>`. A machine that later
needs the files uses `<cache>/s3/<bucket>/<path>/<revision>/` when an earlier download finished
and was verified there (no request at all: a revision's content never changes); otherwise it
lists the folder, refuses if the revision moved, and downloads every file with `If-Match` on the
ETag it listed, into a private folder, hashing as the bytes arrive. The weights digest those
hashes give (the fingerprint's own definition) must equal the one the registry recorded; only
then is the folder renamed into place. A partial, changed or corrupted download is never used and
never cached. Endpoint and credentials: the standard AWS variables, as for the artifact store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from core.checkpoint import weight_files
from core.errors import CorruptArtifact, InvalidInput, PatchregError, SourceUnavailable
from registry.fingerprint.model_dir import combine_weight_hashes

S3_PREFIX = "s3://"
VERIFIED = ".patchreg-verified"  # in a cached revision: the weights digest it was checked against
CHUNK = 8 << 20
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    path: str  # the folder's key prefix, without a trailing slash
    revision: str | None

    @property
    def uri(self) -> str:
        return f"{S3_PREFIX}{self.bucket}/{self.path}"


@dataclass(frozen=True)
class ListedFile:
    name: str  # relative to the folder
    key: str
    etag: str
    size: int


def parse(spec: str) -> S3Location:
    """`bucket/some/folder[@revision]` (what follows `s3://`)."""
    where, _, revision = spec.partition("@")
    bucket, _, path = where.partition("/")
    path = path.strip("/")
    if not bucket or not path:
        raise InvalidInput(f"invalid object-store source s3://{spec}: expected s3://BUCKET/PATH[@REVISION]")
    return S3Location(bucket, path, revision or None)


def listing_revision(files: list[ListedFile]) -> str:
    """What identifies the folder's content: a digest of (name, ETag, size), sorted by name."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.name):
        h.update(f"{f.name}\0{f.etag}\0{f.size}\n".encode())
    return h.hexdigest()[:40]


def resolve_s3(
    spec: str,
    *,
    patterns: list[str],
    cache_root: Path,
    local_only: bool = False,
    weights_digest: str | None = None,
    client: Any = None,
) -> tuple[Path, str, str]:
    """(local folder, URI to record, revision) for `s3://spec`; see the module docstring.

    `weights_digest`: what the registry recorded; None only while registering (nothing recorded
    yet: the fingerprint taken from the downloaded files becomes the record)."""
    loc = parse(spec)
    if loc.revision is not None:
        cached = _cached(cache_root, loc, loc.revision, weights_digest)
        if cached is not None:
            return cached, f"{loc.uri}@{loc.revision}", loc.revision
    if local_only:
        raise SourceUnavailable(f"s3://{spec} is not in this machine's base cache")
    from registry.store.s3 import GuardedClient, make_client

    client = make_client() if client is None else client
    client = client if isinstance(client, GuardedClient) else GuardedClient(client)
    files = _list(client, loc, patterns)
    revision = listing_revision(files)
    if loc.revision is not None and revision != loc.revision:
        raise SourceUnavailable(
            f"{loc.uri} changed since it was registered (revision {loc.revision[:12]}, now "
            f"{revision[:12]}); register the new files as a new version"
        )
    folder = _cached(cache_root, loc, revision, weights_digest)
    if folder is None:
        folder = _download(client, loc, files, revision, weights_digest, cache_root)
    return folder, f"{loc.uri}@{revision}", revision


def _folder(cache_root: Path, loc: S3Location, revision: str) -> Path:
    return Path(cache_root) / "s3" / loc.bucket / loc.path / revision


def _cached(cache_root: Path, loc: S3Location, revision: str, weights_digest: str | None) -> Path | None:
    folder = _folder(cache_root, loc, revision)
    try:
        verified = (folder / VERIFIED).read_text().strip()
    except OSError:
        return None
    if weights_digest is not None and verified != weights_digest:
        raise CorruptArtifact(
            f"{loc.uri}@{revision[:12]}: its weights hash to {verified[:12]}, the registry recorded "
            f"{weights_digest[:12]}; it will not be used"
        )
    return folder


def _list(client: Any, loc: S3Location, patterns: list[str]) -> list[ListedFile]:
    """The folder's model files (direct children matching `patterns`; subfolders are not a
    model's files, e.g. a repo's `original/` copy)."""
    files = []
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=loc.bucket, Prefix=f"{loc.path}/", Delimiter="/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                name = obj["Key"][len(loc.path) + 1 :]
                if name and any(fnmatch(name, p) for p in patterns):
                    files.append(ListedFile(name, obj["Key"], str(obj["ETag"]), int(obj["Size"])))
    except PatchregError as exc:
        raise SourceUnavailable(f"cannot list {loc.uri}: {exc.message}") from None
    if not any(f.name == "config.json" for f in files):
        raise SourceUnavailable(f"{loc.uri}: no model there (no config.json among its files)")
    return files


def _download(
    client: Any,
    loc: S3Location,
    files: list[ListedFile],
    revision: str,
    weights_digest: str | None,
    cache_root: Path,
) -> Path:
    folder = _folder(cache_root, loc, revision)
    folder.parent.mkdir(parents=True, exist_ok=True)
    private = folder.parent / f".{revision}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    private.mkdir()
    try:
        total = sum(f.size for f in files)
        log.info("downloading %s (%d files, %.1f MB)", loc.uri, len(files), total / 1e6)
        hashes = {f.name: _fetch(client, loc, f, private / f.name) for f in files}
        actual = combine_weight_hashes([(p.name, hashes[p.name]) for p in weight_files(private)])
        if weights_digest is not None and actual != weights_digest:
            raise CorruptArtifact(
                f"{loc.uri}@{revision[:12]}: its weights hash to {actual[:12]}, the registry recorded "
                f"{weights_digest[:12]}; it will not be used"
            )
        (private / VERIFIED).write_text(actual + "\n")
        try:
            private.rename(folder)
        except OSError:  # another process finished the same revision first: use theirs
            if not (folder / VERIFIED).exists():
                raise
        return folder
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _fetch(client: Any, loc: S3Location, listed: ListedFile, dest: Path) -> str:
    """Download one object, only if it is still the one listed; its sha256."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        body = client.get_object(Bucket=loc.bucket, Key=listed.key, IfMatch=listed.etag)["Body"]
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"PreconditionFailed", "412", "NoSuchKey", "404"}:
            raise SourceUnavailable(f"{loc.uri}: {listed.name} changed while it was downloaded") from None
        raise
    except PatchregError as exc:
        raise SourceUnavailable(f"cannot download {loc.uri}: {exc.message}") from None
    h = hashlib.sha256()
    with body, open(dest, "wb") as out:
        try:
            while chunk := body.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
        except BotoCoreError as exc:  # the connection dropped mid-file
            raise SourceUnavailable(f"cannot download {loc.uri}: {str(exc).splitlines()[0]}") from None
    return h.hexdigest()
