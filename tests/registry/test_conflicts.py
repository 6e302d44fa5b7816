"""Lost races, on SQLite and PostgreSQL: a unique violation becomes `AlreadyExists` in
`transaction()`, and a blob shared by concurrent writers is never removed under one of them."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from core.errors import AlreadyExists, DatabaseUnavailable
from registry.db import NEW_BLOBS_KEY, _discard_new_blobs, make_engine, session_factory, transaction
from registry.models import Dataset, Domain
from registry.services import artifacts, datasets, training
from registry.services.lookup import get_dataset
from tests.conftest import Registry
from tests.factories import register_family
from tests.helpers import NothingWritten

MEDIA = "application/octet-stream"


def test_a_unique_violation_is_already_exists(registry: Registry) -> None:
    """What the loser of a race sees: its service's check passed, the database refused the row."""
    with transaction(registry.factory) as s:
        s.add(Domain(name="medical"))
    with (
        NothingWritten(registry.engine, registry.store.root),
        pytest.raises(AlreadyExists, match="a domain of this name already exists") as err,
        transaction(registry.factory) as s,
    ):
        s.add(Domain(name="medical"))
        s.flush()
    assert isinstance(err.value.__cause__, IntegrityError)  # kept for the server log


def test_other_integrity_errors_are_not_reported_as_conflicts(registry: Registry) -> None:
    with pytest.raises(IntegrityError), transaction(registry.factory) as s:
        s.add(Dataset(domain_id=12345, name="d", role="train", artifact_digest="0" * 64, rows=1))
        s.flush()


def test_a_locked_sqlite_database_is_unavailable(sqlite_template: Path, tmp_path: Path) -> None:
    """SQLite has one writer: a write that still finds it locked after the busy timeout is a 503."""
    path = tmp_path / "registry.db"
    shutil.copy(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    holder = engine.raw_connection()
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseUnavailable, match="busy"), transaction(session_factory(engine)) as s:
            s.execute(text("PRAGMA busy_timeout=50"))
            s.add(Domain(name="medical"))
            s.flush()
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()


def test_a_blob_removed_by_a_failed_writer_is_stored_again(registry: Registry, tmp_path: Path) -> None:
    """B found the blob stored (by A), then A failed and removed it before B recorded its row."""
    data = tmp_path / "blob.bin"
    data.write_bytes(b"shared content")
    a_failed = threading.Event()

    def a() -> None:
        with pytest.raises(RuntimeError), transaction(registry.factory) as s:
            artifacts.store_file(s, registry.store, data, MEDIA)
            a_failed.wait(30)
            raise RuntimeError("A fails after storing")

    put = registry.store.put_file

    def put_then_let_a_fail(path: Path):  # B's put: the blob is A's, then A removes it
        blob = put(path)
        a_failed.set()
        thread.join(30)
        return blob

    thread = threading.Thread(target=a)
    thread.start()
    time.sleep(0.2)  # A has stored the blob and holds its row
    registry.store.put_file = put_then_let_a_fail
    with transaction(registry.factory) as s:
        digest = artifacts.store_file(s, registry.store, data, MEDIA).digest
    registry.store.put_file = put
    assert registry.store.local_path(digest).read_bytes() == b"shared content"


def test_a_failed_writer_waits_for_a_concurrent_one(registry: Registry, tmp_path: Path) -> None:
    """A failed writer's cleanup that runs while B is recording the same blob keeps it for B."""
    data = tmp_path / "blob.bin"
    data.write_bytes(b"shared content")
    with transaction(registry.factory) as s:
        digest = artifacts.store_file(s, registry.store, data, MEDIA).digest
        failed = registry.factory()  # what the failed writer left: a blob it had stored
        failed.info[NEW_BLOBS_KEY] = [(registry.store, digest)]
        cleanup = threading.Thread(target=_discard_new_blobs, args=(failed, registry.factory))
        cleanup.start()
        time.sleep(0.5)  # the cleanup now waits for this transaction's row
    cleanup.join(30)
    failed.close()
    assert registry.store.local_path(digest).read_bytes() == b"shared content"


def test_concurrent_importance_maps_keep_one(registry: Registry, make_tiny_model, tmp_path: Path) -> None:
    """Two jobs measuring one (base, dataset) at once (a lease taken over from a live worker): both
    answer with the one map recorded, which neither of them fails on."""
    register_family(registry.factory, make_tiny_model, "medical")
    rows = tmp_path / "web.jsonl"
    rows.write_text('{"text": "general text"}\n')
    with transaction(registry.factory) as s:
        datasets.add_dataset(s, registry.store, "medical", "web", rows, "general")
        dataset_id = get_dataset(s, "medical", "web").id
    barrier = threading.Barrier(2)

    def measure(i: int) -> str:
        result = tmp_path / f"importance-{i}.bin"
        result.write_bytes(f"map {i}".encode())
        barrier.wait()
        with transaction(registry.factory) as s:
            return training.record_importance(s, registry.store, "tiny:v1", dataset_id, result, None)

    with ThreadPoolExecutor(2) as pool:
        digests = set(pool.map(measure, range(2)))
    with transaction(registry.factory) as s:
        assert digests == {training.find_importance(s, "tiny:v1", dataset_id)}
