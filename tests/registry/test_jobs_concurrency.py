"""Several worker processes, each with its own engine, drain one queue: every job is claimed exactly
once and completed by the worker that claimed it (PostgreSQL: SKIP LOCKED; SQLite: WAL, busy
timeout and the conditional UPDATE)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.db import transaction
from registry.models import AuditEvent, Job
from registry.services import jobs
from tests.conftest import Registry

ROOT = Path(__file__).resolve().parents[2]
JOBS = 60

# argv: database url, worker name, folder for the ready/go handshake and the claims file.
WORKER = """
import json, sys, time
from pathlib import Path
from sqlalchemy import text
from registry.db import make_engine, session_factory, transaction
from registry.services import jobs

url, name, folder = sys.argv[1], sys.argv[2], Path(sys.argv[3])
engine = make_engine(url)
factory = session_factory(engine)
with engine.connect() as conn:
    conn.execute(text("SELECT 1"))
(folder / f"ready.{name}").touch()
deadline = time.monotonic() + 60
while not (folder / "go").exists():  # start together, so the claims really race
    if time.monotonic() > deadline:
        sys.exit("never told to go")
    time.sleep(0.002)
claimed = []
while True:
    with transaction(factory) as s:
        s.info["actor"] = f"worker:{name}"
        job = jobs.claim(s, name, lease_seconds=300)
    if job is None:
        break
    claimed.append(job.id)
    time.sleep(0.003)  # "work" while holding the lease: others must skip this job meanwhile
    with transaction(factory) as s:
        s.info["actor"] = f"worker:{name}"
        if not jobs.complete(s, job.id, name, {"worker": name}):
            sys.exit(f"{name} lost job {job.id}")
(folder / f"claims.{name}.json").write_text(json.dumps(claimed))
engine.dispose()
"""


def drain_with_processes(registry: Registry, tmp_path: Path, workers: int) -> dict[str, list[str]]:
    folder = tmp_path / "handshake"
    folder.mkdir()
    names = [f"w{i}" for i in range(workers)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, registry.url, name, str(folder)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    try:
        deadline = time.monotonic() + 60
        while not all((folder / f"ready.{n}").exists() for n in names):
            failed = [p for p in procs if p.poll() is not None]
            assert not failed, failed[0].communicate()[1]
            assert time.monotonic() < deadline, "workers never got ready"
            time.sleep(0.01)
        (folder / "go").touch()
        for proc in procs:
            out, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, f"worker exited {proc.returncode}:\n{out}\n{err}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {n: json.loads((folder / f"claims.{n}.json").read_text()) for n in names}


@pytest.mark.parametrize(
    "db_url, workers", [("sqlite", 3), ("postgresql", 4)], indirect=["db_url"], ids=["sqlite", "postgresql"]
)
def test_worker_processes_claim_each_job_exactly_once(
    registry: Registry, tmp_path: Path, workers: int
) -> None:
    with transaction(registry.factory) as s:
        queued = {jobs.enqueue(s, "evaluate", {"n": i})[0].id for i in range(JOBS)}

    claims = drain_with_processes(registry, tmp_path, workers)

    every_claim = Counter(job_id for ids in claims.values() for job_id in ids)
    assert set(every_claim) == queued
    assert [job_id for job_id, n in every_claim.items() if n > 1] == []
    assert sum(1 for ids in claims.values() if ids) >= 2, claims  # the claims did interleave
    claimer = {job_id: name for name, ids in claims.items() for job_id in ids}
    with transaction(registry.factory) as s:
        rows = s.scalars(select(Job)).all()
        assert len(rows) == JOBS
        for job in rows:
            assert (job.status, job.attempts) == ("succeeded", 1), job.id
            assert job.worker == claimer[job.id] and job.result == {"worker": claimer[job.id]}
        actions = Counter(s.scalars(select(AuditEvent.action)).all())
    assert actions["job.succeeded"] == JOBS and actions["job.reclaim"] == 0
