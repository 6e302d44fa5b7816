"""`patchreg gc`: a dry run lists and keeps; a real run removes only orphans past the age guard."""

from __future__ import annotations

import io
import os
import time

from registry.store import LocalStore
from tests.cli.conftest import Patchreg


def _old(path: os.PathLike[str], seconds: float = 7200) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_gc_dry_run_then_removal(patchreg: Patchreg) -> None:
    store = LocalStore(patchreg.home / "artifacts")
    orphan = store.put_stream(io.BytesIO(b"an orphan")).digest
    blob = store.root / "sha256" / orphan[:2] / orphan
    _old(blob)
    left = store.scratch.root / "upload-crashed"
    left.write_bytes(b"partial")
    _old(left)

    dry = patchreg.json("gc", "--dry-run")
    assert dry["dry_run"] is True
    assert {(i["kind"], i["name"]) for i in dry["removed"]} == {("blob", orphan), ("temp", "upload-crashed")}
    assert blob.exists() and left.exists()

    human = patchreg("gc", "--dry-run").stdout
    assert "would remove 1 unreferenced blobs (9 B)" in human and "would remove 1 stale temp" in human

    kept = patchreg.json("gc", "--older-than", "3h")  # both are 2 h old: inside this guard
    assert kept["removed"] == [] and len(kept["kept"]) == 2 and blob.exists()

    done = patchreg("gc", "--older-than", "1h").stdout
    assert done.startswith("removed 1 unreferenced blobs") and not blob.exists() and not left.exists()


def test_a_bad_duration_is_a_usage_error(patchreg: Patchreg) -> None:
    result = patchreg("gc", "--older-than", "soon", ok=False)
    assert result.exit_code == 2 and "not a duration" in result.stderr
