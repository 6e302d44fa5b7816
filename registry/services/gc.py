"""Garbage collection: blobs that no row references and temp files a dead process left behind.

The rule that keeps it safe next to live writers: nothing younger than the age guard is touched.
A write stores its blob first and commits the row that references it afterwards, and re-storing
content that is already there refreshes the blob's mtime (`LocalStore.put_stream`); so a blob
without a row is garbage only when it has not been written for `older_than` seconds, and is
checked again right before it goes. Temp entries count as stale when nothing inside them changed
for that long (an upload in progress keeps writing). The guard must therefore exceed the longest
time one write spends between storing a blob and committing its row (default one hour).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.models import Artifact
from registry.schemas import GcItem, GcReport
from registry.services import audit
from registry.store import ArtifactStore, BlobFile

_BATCH = 500


def collect(session: Session, store: ArtifactStore, *, older_than: float, dry_run: bool) -> GcReport:
    """Find (and unless `dry_run`, remove) unreferenced blobs and stale temp entries."""
    now = time.time()
    cutoff = now - older_than
    removed: list[GcItem] = []
    kept: list[GcItem] = []
    for blob in _unreferenced(session, store.blobs()):
        item = GcItem(kind="blob", name=blob.digest, size=blob.size, age_seconds=round(now - blob.mtime, 1))
        if blob.mtime >= cutoff or not (dry_run or store.delete_if_older(blob.digest, cutoff)):
            kept.append(item)
        else:
            removed.append(item)
    for leftover in store.scratch.leftovers(0, now):
        name = leftover.path.relative_to(store.scratch.root).as_posix()
        item = GcItem(kind="temp", name=name, size=leftover.size, age_seconds=round(leftover.age, 1))
        if leftover.age < older_than:
            kept.append(item)
        elif dry_run or store.scratch.remove_if_stale(leftover.path, older_than):
            removed.append(item)
    report = GcReport(dry_run=dry_run, older_than_seconds=older_than, removed=removed, kept=kept)
    if removed and not dry_run:
        blobs, blob_bytes = report.total("blob")
        temps, temp_bytes = report.total("temp")
        audit.record(
            session,
            "store.gc",
            "store",
            blobs=blobs,
            blob_bytes=blob_bytes,
            temps=temps,
            temp_bytes=temp_bytes,
        )
    return report


def _unreferenced(session: Session, blobs: Iterable[BlobFile]) -> Iterator[BlobFile]:
    """The blobs whose digest no `artifacts` row holds, asked in batches."""
    batch: list[BlobFile] = []
    for blob in blobs:
        batch.append(blob)
        if len(batch) == _BATCH:
            yield from _without_rows(session, batch)
            batch = []
    yield from _without_rows(session, batch)


def _without_rows(session: Session, batch: list[BlobFile]) -> list[BlobFile]:
    if not batch:
        return []
    digests = [b.digest for b in batch]
    known = set(session.scalars(select(Artifact.digest).where(Artifact.digest.in_(digests))))
    return [b for b in batch if b.digest not in known]
