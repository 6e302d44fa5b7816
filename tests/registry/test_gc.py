"""`gc` and the temp space: unreferenced blobs and stale temp entries go, nothing a write may still
need does (referenced blobs, anything younger than the age guard), and a dry run removes nothing."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

from registry.db import transaction
from registry.services import artifacts, audit
from registry.services import gc as gc_service
from registry.store import LocalStore
from tests.conftest import Registry

HOUR = 3600.0


def _age(path: Path, seconds: float) -> None:
    """Make `path` (and everything under it) look untouched for `seconds`."""
    then = time.time() - seconds
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (then, then))


def _plant(registry: Registry, tmp_path: Path) -> dict[str, Path]:
    """A referenced blob, an old orphan blob, a young orphan blob, an old temp file, an old spool
    directory and a fresh temp file, all made to look as old as their names say."""
    store = registry.store
    src = tmp_path / "kept.bin"
    src.write_bytes(b"referenced content")
    with transaction(registry.factory, "test") as s:
        kept = artifacts.store_file(s, store, src, "application/octet-stream").digest
    old_orphan = store.put_stream(io.BytesIO(b"nobody references me")).digest
    young_orphan = store.put_stream(io.BytesIO(b"an upload between its blob and its row")).digest
    blob = {d: store.root / "sha256" / d[:2] / d for d in (kept, old_orphan, young_orphan)}
    _age(blob[kept], 2 * HOUR)
    _age(blob[old_orphan], 2 * HOUR)
    store.scratch.root.mkdir(parents=True, exist_ok=True)
    old_temp = store.scratch.root / "upload-dead"
    old_temp.write_bytes(b"x" * 100)
    _age(old_temp, 2 * HOUR)
    spool = store.scratch.mkdtemp("spool-")
    (spool / "parts").mkdir()
    (spool / "parts" / "patch.safetensors").write_bytes(b"y" * 50)
    _age(spool, 2 * HOUR)
    fresh = store.scratch.root / "upload-live"
    fresh.write_bytes(b"z")
    return {
        "kept": blob[kept],
        "old_orphan": blob[old_orphan],
        "young_orphan": blob[young_orphan],
        "old_temp": old_temp,
        "spool": spool,
        "fresh": fresh,
    }


def test_gc_removes_old_orphans_and_stale_temp_but_never_a_referenced_or_young_blob(
    registry: Registry, tmp_path: Path
) -> None:
    planted = _plant(registry, tmp_path)
    with transaction(registry.factory, "test") as s:
        report = gc_service.collect(s, registry.store, older_than=HOUR, dry_run=False)
    removed = {(i.kind, i.name) for i in report.removed}
    assert removed == {
        ("blob", planted["old_orphan"].name),
        ("temp", "upload-dead"),
        ("temp", planted["spool"].name),
    }
    assert report.total("blob") == (1, len(b"nobody references me"))
    assert report.total("temp") == (2, 150)
    assert {(i.kind, i.name) for i in report.kept} == {
        ("blob", planted["young_orphan"].name),
        ("temp", "upload-live"),
    }
    assert not planted["old_orphan"].exists() and not planted["old_temp"].exists()
    assert not planted["spool"].exists()
    for name in ("kept", "young_orphan", "fresh"):
        assert planted[name].exists(), name
    with transaction(registry.factory) as s:
        events = [e for e in audit.list_events(s) if e.action == "store.gc"]
    assert [e.detail["blobs"] for e in events] == [1]


def test_a_dry_run_removes_nothing_and_reports_the_same(registry: Registry, tmp_path: Path) -> None:
    planted = _plant(registry, tmp_path)
    with transaction(registry.factory, "test") as s:
        report = gc_service.collect(s, registry.store, older_than=HOUR, dry_run=True)
    assert report.dry_run and report.total("blob")[0] == 1 and report.total("temp")[0] == 2
    assert all(path.exists() for path in planted.values())
    with transaction(registry.factory) as s:
        assert not [e for e in audit.list_events(s) if e.action == "store.gc"]


def test_restoring_existing_content_refreshes_its_blob_so_gc_keeps_it(
    registry: Registry, tmp_path: Path
) -> None:
    """An old orphan whose content an upload stores again is about to be referenced: kept."""
    store = registry.store
    digest = store.put_stream(io.BytesIO(b"content coming back")).digest
    blob = store.root / "sha256" / digest[:2] / digest
    _age(blob, 2 * HOUR)
    assert store.put_stream(io.BytesIO(b"content coming back")).created is False
    with transaction(registry.factory, "test") as s:
        report = gc_service.collect(s, store, older_than=HOUR, dry_run=False)
    assert blob.exists() and [i.name for i in report.kept] == [digest]


def test_the_temp_sweep_is_age_guarded(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    old = store.scratch.mkdtemp("spool-")
    (old / "part").write_bytes(b"a" * 10)
    _age(old, 10)
    live = store.scratch.mkdtemp("spool-")
    (live / "part").write_bytes(b"b")
    _age(live, 10)
    (live / "part").write_bytes(b"bb")  # still being written: its newest file is fresh
    removed = store.scratch.sweep(5)
    assert [r.path for r in removed] == [old] and removed[0].size == 10
    assert live.exists() and not old.exists()
    assert store.scratch.sweep(5) == []
    assert LocalStore(tmp_path / "never-used").scratch.sweep(0) == []
