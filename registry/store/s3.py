"""S3-compatible backend (`PATCHREG_STORE=s3://bucket/prefix`): the `ArtifactStore` of `LocalStore`.

Library: boto3. It is the reference S3 SDK, reads the endpoint and credentials the standard way
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, ~/.aws, instance
roles) against AWS, MinIO, Ceph, R2 or moto alike, is synchronous like the rest of the store, and
its managed transfer (s3transfer) uploads a file as a streamed multipart upload in bounded memory.
obstore is async-first and newer; s3fs wraps aiobotocore in a filesystem that hides the multipart
and listing calls that gc needs.

Layout: `<prefix>/sha256/<ab>/<digest>`, as the local store's. Writes hash into a private scratch
file first (the key is the digest, and the bytes uploaded must be the bytes hashed), then upload it
to its final key; S3 shows an object only once its PUT or CompleteMultipartUpload finishes, so no
reader sees a partial blob. A killed writer leaves an incomplete multipart upload (invisible) and a
scratch file: both are temp space (`S3Scratch`), swept by age like the local store's.

Readers that need a file get one from a local cache, itself a `LocalStore` (`<home>/s3-cache`,
safe to delete at any time) and filled through `VerifyingReader`, which hashes while it downloads
and raises `CorruptArtifact` before the last byte reaches the caller: a corrupted object never
enters the cache and is never served. Ranged reads are served from that verified copy.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from core.errors import ConfigError, CorruptArtifact, NotFound, StoreUnavailable
from registry.store.local import CHUNK, BlobFile, LocalStore
from registry.store.scratch import Leftover, Scratch

if TYPE_CHECKING:
    from registry.store import StoredBlob

S3_PREFIX = "s3://"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_UPLOADS = "s3-uploads"  # where incomplete multipart uploads appear among the temp entries
COPY_LIMIT = 5 << 30  # the largest object one CopyObject may copy
PART_SIZE = 8 << 20  # s3transfer raises it for blobs that would need more than 10,000 parts


def parse_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix"); the prefix may be empty."""
    if not url.startswith(S3_PREFIX):
        raise ConfigError(f"not an s3:// store URL: {url!r}")
    bucket, _, prefix = url[len(S3_PREFIX) :].partition("/")
    if not bucket:
        raise ConfigError(f"store URL {url!r} names no bucket: expected s3://BUCKET[/PREFIX]")
    return bucket, prefix.strip("/")


def make_client() -> Any:
    """An S3 client configured from the environment, as every AWS tool is, whose failures to reach
    the endpoint (or to be let in) surface as `StoreUnavailable` with one line, not botocore's."""
    import boto3
    from botocore.config import Config

    client = boto3.session.Session().client(
        "s3", config=Config(retries={"mode": "standard", "max_attempts": 5})
    )
    return GuardedClient(client)


def failure(exc: Exception) -> str | None:
    """One line for an S3 failure that no retry of the same call fixes here (endpoint down, no
    credentials, no bucket, access denied); None for anything else, e.g. a missing key."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return "no S3 credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in {"NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}:
            return f"{code}: {error.get('Message') or 'refused by the S3 endpoint'}".splitlines()[0]
        return None
    if isinstance(exc, BotoCoreError):
        return str(exc).splitlines()[0]
    return None


class GuardedClient:
    """A boto3 S3 client whose calls (and paginations) raise `StoreUnavailable` for `failure`s."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        if name == "get_paginator":
            return lambda *a, **kw: _GuardedPaginator(attr(*a, **kw))

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                _raise_unavailable(exc)
                raise

        return call


class _GuardedPaginator:
    def __init__(self, paginator: Any) -> None:
        self._paginator = paginator

    def paginate(self, **kwargs: Any) -> Iterator[Any]:
        try:
            yield from self._paginator.paginate(**kwargs)
        except Exception as exc:
            _raise_unavailable(exc)
            raise


def _raise_unavailable(exc: Exception) -> None:
    why = failure(exc)
    if why is not None:
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "the S3 endpoint")
        raise StoreUnavailable(f"object store at {endpoint} unavailable: {why}") from None


def _missing(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}


class VerifyingReader(io.RawIOBase):
    """Reads an object's body while hashing it, always holding back the chunk read last: only once
    the body ended and its sha256 matched is that chunk released, so a caller never receives the
    whole of a corrupted object (it gets `CorruptArtifact` instead of the final bytes)."""

    def __init__(self, body: Any, digest: str) -> None:
        self._body, self._digest = body, digest
        self._hash = hashlib.sha256()
        self._ready, self._tail, self._done = b"", b"", False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._ready and not self._done:
            chunk = self._body.read(CHUNK)
            if chunk:
                self._hash.update(chunk)
                self._ready, self._tail = self._tail, chunk
                continue
            actual = self._hash.hexdigest()
            if actual != self._digest:
                raise CorruptArtifact(
                    f"artifact {self._digest[:12]} is corrupt (content hashes to {actual[:12]}); "
                    "it will not be served"
                )
            self._ready, self._tail, self._done = self._tail, b"", True
        n = min(len(buffer), len(self._ready))
        buffer[:n] = self._ready[:n]
        self._ready = self._ready[n:]
        return n

    def close(self) -> None:
        self._body.close()
        super().close()


class S3Scratch(Scratch):
    """The local scratch directory plus the bucket's incomplete multipart uploads under the prefix.

    An upload counts as stale when neither it started nor a part arrived for `older_than` seconds
    (a live writer keeps sending parts); its entry is `s3-uploads/<key>/<upload id>`.
    """

    def __init__(self, root: Path, store: S3Store) -> None:
        super().__init__(root)
        self._store = store

    def leftovers(self, older_than: float, now: float | None = None) -> list[Leftover]:
        now = time.time() if now is None else now
        found = super().leftovers(older_than, now)
        for key, upload_id, size, newest in self._store.incomplete_uploads():
            if now - newest >= older_than:
                found.append(Leftover(self.root / _UPLOADS / key / upload_id, size, now - newest))
        return sorted(found, key=lambda leftover: -leftover.age)

    def remove_if_stale(self, path: Path, older_than: float) -> bool:
        if path.is_relative_to(self.root / _UPLOADS):
            *key, upload_id = path.relative_to(self.root / _UPLOADS).parts
            return self._store.abort_upload_if_stale("/".join(key), upload_id, older_than)
        return super().remove_if_stale(path, older_than)


class S3Store:
    def __init__(self, bucket: str, prefix: str, cache_root: Path, client: Any = None) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = client if client is not None else make_client()
        self._cache = LocalStore(Path(cache_root))
        self.scratch: Scratch = S3Scratch(self._cache.scratch.root, self)

    @classmethod
    def from_url(cls, url: str, cache_root: Path) -> S3Store:
        bucket, prefix = parse_url(url)
        return cls(bucket, prefix, cache_root)

    def __repr__(self) -> str:
        return f"S3Store(s3://{self.bucket}/{self.prefix})"

    def _root(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def key(self, digest: str) -> str:
        if not _DIGEST.match(digest):
            raise NotFound(f"not an artifact digest: {digest!r}")
        return f"{self._root()}sha256/{digest[:2]}/{digest}"

    def verified_once(self) -> AbstractContextManager[None]:
        """Cached copies are hashed on their first read only inside this block (as `LocalStore`)."""
        return self._cache.verified_once()

    # writes

    def put_file(self, path: Path) -> StoredBlob:
        with open(path, "rb") as f:
            return self.put_stream(f)

    def put_stream(self, stream: BinaryIO) -> StoredBlob:
        """Spool to scratch while hashing, then upload under the digest (multipart when large).

        Content already stored is re-stamped instead (copied onto itself), which refreshes its
        LastModified: `gc` keeps young blobs, so content about to be referenced again stays.
        """
        from boto3.s3.transfer import TransferConfig

        from registry.store import StoredBlob

        h, size = hashlib.sha256(), 0
        fd, tmp_name = self.scratch.mkstemp("upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            digest = h.hexdigest()
            if self._touch(digest):
                return StoredBlob(digest, size, created=False)
            config = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE)
            self.client.upload_file(tmp_name, self.bucket, self.key(digest), Config=config)
            return StoredBlob(digest, size, created=True)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)

    def _touch(self, digest: str) -> bool:
        """Refresh an existing object's LastModified; False if it does not exist (or vanished)."""
        from boto3.s3.transfer import TransferConfig

        key = self.key(digest)
        try:
            self.client.copy(
                {"Bucket": self.bucket, "Key": key},
                self.bucket,
                key,
                ExtraArgs={"MetadataDirective": "REPLACE", "Metadata": {"touched": str(time.time())}},
                Config=TransferConfig(multipart_threshold=COPY_LIMIT),  # one CopyObject up to 5 GiB
            )
        except Exception as exc:
            if _missing(exc):
                return False
            raise
        return True

    def delete(self, digest: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(digest))
        self._cache.delete(digest)

    # reads

    def exists(self, digest: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(digest))
        except Exception as exc:
            if _missing(exc):
                return False
            raise
        return True

    def stream_verified(self, digest: str) -> BinaryIO:
        """The object's bytes straight from S3, hashed as they come (see `VerifyingReader`)."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(digest))["Body"]
        except Exception as exc:
            if _missing(exc):
                raise NotFound(f"artifact {digest[:12]} is missing from the store") from None
            raise
        return io.BufferedReader(VerifyingReader(body, digest), CHUNK)

    def local_path(self, digest: str) -> Path:
        """A verified file in the local cache, downloaded on first use."""
        if not self._cache.exists(digest):
            with self.stream_verified(digest) as reader:
                self._cache.put_stream(reader)
        return self._cache.local_path(digest)

    def open_verified(self, digest: str) -> BinaryIO:
        """As `LocalStore`: the whole blob is verified before its first byte is handed out."""
        return open(self.local_path(digest), "rb")

    def copy_to(self, digest: str, dest: Path) -> None:
        """Copy out while hashing; the destination appears only if the content matched."""
        if self._cache.exists(digest):
            self._cache.copy_to(digest, dest)
            return
        dest = Path(dest)
        with self.stream_verified(digest) as reader:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
            try:
                with os.fdopen(fd, "wb") as out:
                    while chunk := reader.read(CHUNK):
                        out.write(chunk)
                os.replace(tmp_name, dest)
            finally:
                if os.path.exists(tmp_name):
                    os.unlink(tmp_name)

    # gc

    def blobs(self) -> Iterator[BlobFile]:
        """Every stored blob with its size and LastModified (its last write or re-store)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self._root()}sha256/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                *_, shard, name = obj["Key"].split("/")
                if _DIGEST.match(name) and shard == name[:2]:
                    yield BlobFile(name, int(obj["Size"]), obj["LastModified"].timestamp())

    def delete_if_older(self, digest: str, cutoff: float) -> bool:
        """Delete a blob unless it was written or re-stored after `cutoff` (epoch seconds)."""
        key = self.key(digest)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _missing(exc):
                return False
            raise
        if head["LastModified"].timestamp() >= cutoff:
            return False
        self.client.delete_object(Bucket=self.bucket, Key=key)
        self._cache.delete(digest)
        return True

    def incomplete_uploads(self) -> Iterator[tuple[str, str, int, float]]:
        """(key, upload id, bytes sent, newest activity) of each multipart upload not completed."""
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self._root()
        )
        for page in pages:
            for upload in page.get("Uploads", []):
                size, newest = self._upload_activity(upload["Key"], upload["UploadId"])
                yield upload["Key"], upload["UploadId"], size, max(newest, upload["Initiated"].timestamp())

    def _upload_activity(self, key: str, upload_id: str) -> tuple[int, float]:
        size, newest = 0, 0.0
        try:
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            )
            for page in pages:
                for part in page.get("Parts", []):
                    size += int(part["Size"])
                    newest = max(newest, part["LastModified"].timestamp())
        except Exception as exc:
            if not _missing(exc):
                raise
        return size, newest

    def abort_upload_if_stale(self, key: str, upload_id: str, older_than: float) -> bool:
        """Abort one incomplete upload if it is still idle for `older_than` seconds (checked now)."""
        for k, uid, _size, newest in self.incomplete_uploads():
            if (k, uid) == (key, upload_id):
                if time.time() - newest < older_than:
                    return False
                try:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                except Exception as exc:
                    if _missing(exc):
                        return False
                    raise
                return True
        return False
