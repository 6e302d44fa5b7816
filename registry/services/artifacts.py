"""Blobs plus their rows. New blobs are remembered on the session so that a rollback removes them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from registry.db import NEW_BLOBS_KEY
from registry.models import Artifact
from registry.store import ArtifactStore, StoredBlob


def _register(session: Session, store: ArtifactStore, blob: StoredBlob, media_type: str) -> Artifact:
    if blob.created:
        session.info.setdefault(NEW_BLOBS_KEY, []).append((store, blob.digest))
    row = session.get(Artifact, blob.digest)
    if row is None:
        row = Artifact(digest=blob.digest, size=blob.size, media_type=media_type)
        session.add(row)
        session.flush()
    return row


def store_file(session: Session, store: ArtifactStore, path: Path, media_type: str) -> Artifact:
    return _register(session, store, store.put_file(path), media_type)
