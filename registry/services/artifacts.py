"""Blobs plus their rows, insert-or-reuse: concurrent uploads of the same content share one row.

A row this transaction inserted is remembered on the session, so that a rollback removes its blob
(unless another transaction recorded the same content meanwhile: see `registry.db`).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from registry.conflicts import insert_or_ignore
from registry.db import NEW_BLOBS_KEY
from registry.models import Artifact
from registry.store import ArtifactStore


def store_file(session: Session, store: ArtifactStore, path: Path, media_type: str) -> Artifact:
    blob = store.put_file(path)
    values = {"digest": blob.digest, "size": blob.size, "media_type": media_type}
    if insert_or_ignore(session, Artifact, values, ["digest"]):
        session.info.setdefault(NEW_BLOBS_KEY, []).append((store, blob.digest))
    # The row is now ours or committed by another transaction, so no failed writer removes the blob
    # from here on; one that failed just before may have removed it after `put_file`: put it back.
    if not store.exists(blob.digest):
        store.put_file(path)
    row = session.get(Artifact, blob.digest)
    assert row is not None  # inserted above, or committed and hence visible
    return row
