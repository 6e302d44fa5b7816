"""A real `patchreg worker` process killed with SIGKILL in the middle of training, on SQLite and
PostgreSQL: it leaves no patch and no stray blob, its job waits out the lease, and the next worker
takes the job over and finishes it exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.db import transaction, utcnow
from registry.models import Artifact, AuditEvent, Patch
from registry.services import bases, datasets, domains, training
from tests.conftest import Registry
from tests.helpers import show_job as show
from trainer.family import Family, domain_rows, write_jsonl
from worker.runner import Worker, WorkerConfig

REPO = Path(__file__).resolve().parents[2]
LEASE = 1.0
STEPS = 80  # 1-2 s of training on the tiny model: caught mid-way by the first heartbeats


@pytest.fixture(scope="session")
def train_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    train, _ = domain_rows()
    return write_jsonl(train, tmp_path_factory.mktemp("worker-sigkill-data") / "train.jsonl")


def stray_files(registry: Registry) -> list[str]:
    """Store files that no Artifact row accounts for, half-written temp files included."""
    root = registry.store.root
    with transaction(registry.factory) as s:
        known = set(s.scalars(select(Artifact.digest)))
    blobs = [p for p in (root / "sha256").rglob("*") if p.is_file()]
    assert blobs, "the datasets' blobs at least are in the store"
    strays = [str(p.relative_to(root)) for p in blobs if p.name not in known]
    tmp = root / "tmp"
    return strays + ([str(p.relative_to(root)) for p in tmp.rglob("*")] if tmp.exists() else [])


def start_worker(registry: Registry, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATCHREG_")}
    args = ["--home", str(registry.home), "--db", registry.url, "worker", "--name", "doomed"]
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args, "--lease", str(LEASE), "--poll", "0.2"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_a_worker_killed_mid_training_leaves_nothing_and_the_job_is_taken_over(
    registry: Registry, family: Family, train_file: Path, tmp_path: Path
) -> None:
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v1", str(family.v1))
        domains.create_domain(s, "docs")
        datasets.add_dataset(s, registry.store, "docs", "notes", train_file, "train")
        job, _ = training.enqueue_train(
            s,
            domain="docs",
            base="tiny:v1",
            method="lora",
            overrides=["r=8"],
            args={"steps": STEPS, "lr": 3e-3},
        )

    log = tmp_path / "worker.log"
    proc = start_worker(registry, log)
    try:
        deadline = time.monotonic() + 90
        while True:  # until a heartbeat has stored progress of the training itself
            current = show(registry, job.id)
            if current.status == "running" and (current.progress.get("done") or 0) > 0:
                break
            assert proc.poll() is None, f"the worker exited early:\n{log.read_text()}"
            assert current.status in ("queued", "running"), log.read_text()
            assert time.monotonic() < deadline, f"no training progress in time:\n{log.read_text()}"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)

    killed = show(registry, job.id)
    assert (killed.status, killed.worker, killed.attempts) == ("running", "doomed", 1), log.read_text()
    assert 0 < killed.progress["done"] < STEPS
    assert killed.lease_until is not None and killed.lease_until - utcnow() < timedelta(seconds=LEASE + 0.5)
    with transaction(registry.factory) as s:
        assert s.scalars(select(Patch)).all() == []
    assert stray_files(registry) == []
    work = registry.home / "work"
    assert [p.name for p in work.iterdir()] == [f"{job.id}.1"]  # the dead worker's scratch dir

    rescuer = Worker(
        registry.factory,
        registry.store,
        WorkerConfig(work_root=work, name="rescuer", lease_seconds=30, poll_seconds=0.05, backoff_seconds=0),
    )
    assert rescuer.run(until_idle=True) == 2  # the train job once its lease ran out, then its evaluate

    ended = show(registry, job.id)
    assert (ended.status, ended.worker, ended.attempts) == ("succeeded", "rescuer", 2)
    assert ended.result is not None and ended.result["train_steps"] == STEPS
    with transaction(registry.factory) as s:
        (patch,) = s.scalars(select(Patch)).all()
        assert (patch.job_id, patch.origin, patch.id) == (job.id, "trained", ended.result["patch_id"])
        (reclaim,) = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "job.reclaim", AuditEvent.subject == job.id)
        )
        assert reclaim.detail == {"previous_worker": "doomed", "worker": "rescuer"}
    assert stray_files(registry) == []
    assert list(work.iterdir()) == []  # the first attempt's leftovers went with the second's
