"""How the worker fails, on SQLite and PostgreSQL: retries up to `max_attempts` with the error
kept, permanent errors at once, cancellation of a running job, and expired leases taken over."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from registry.db import transaction
from registry.models import AuditEvent, Dataset, Domain, Evaluation, Patch
from registry.schemas import JobRead
from registry.services import bases, datasets, domains, jobs, patches, training
from tests.conftest import Registry
from tests.factories import write_patch
from tests.helpers import show_job as show
from trainer.family import Family, domain_rows, write_jsonl
from worker.context import JobContext
from worker.handlers import port as port_handler
from worker.runner import Handler, Worker, WorkerConfig


@pytest.fixture(scope="session")
def domain_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("worker-failures-data")
    train, evals = domain_rows(n_train=8, n_eval=8)
    return write_jsonl(train, root / "train.jsonl"), write_jsonl(evals, root / "eval.jsonl")


def make_worker(
    registry: Registry, name: str = "w1", lease: float = 30, handlers: dict[str, Handler] | None = None
) -> Worker:
    config = WorkerConfig(
        work_root=registry.home / "work", name=name, lease_seconds=lease, poll_seconds=0.05, backoff_seconds=0
    )
    return Worker(registry.factory, registry.store, config, handlers=handlers)


def actions(registry: Registry, job_id: str) -> list[str]:
    with transaction(registry.factory) as s:
        return list(
            s.scalars(select(AuditEvent.action).where(AuditEvent.subject == job_id).order_by(AuditEvent.id))
        )


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_a_job_that_keeps_failing_ends_failed_after_max_attempts_with_its_error(
    registry: Registry, family: Family, domain_files: tuple[Path, Path], tmp_path: Path
) -> None:
    model = shutil.copytree(family.v1, tmp_path / "v1")
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v1", str(model))
        domains.create_domain(s, "docs")
        datasets.add_dataset(s, registry.store, "docs", "quiz", domain_files[1], "eval")
        patch = patches.register_patch(
            s, registry.store, "docs", "tiny:v1", write_patch(tmp_path / "p.safetensors"), "imported"
        )
        job, _ = jobs.enqueue(s, "evaluate", {"patch_id": patch.id}, dedupe_key=f"evaluate:{patch.id}")
    (model / "model.safetensors").unlink()  # the weights vanish after registration: not a user error

    assert make_worker(registry).run(until_idle=True) == job.max_attempts == 3
    ended = show(registry, job.id)
    assert ended.status == "failed" and ended.attempts == ended.max_attempts
    # Everyone sees one line; the exception and traceback (server paths included) are the detail.
    assert ended.error == "internal_error: unexpected OSError in the worker (admins see the traceback)"
    assert ended.error_detail is None
    with transaction(registry.factory) as s:
        detail = jobs.show_job(s, job.id, debug=True).error_detail
    assert detail and "OSError" in detail and "model.safetensors" in detail and 'File "' in detail
    assert ended.result is None
    assert actions(registry, job.id) == [
        "job.enqueue",
        *["job.retry_scheduled"] * (job.max_attempts - 1),
        "job.failed",
    ]
    with transaction(registry.factory) as s:
        assert patches.show_patch(s, patch.id).status == "candidate"
        assert s.scalar(select(func.count()).select_from(Evaluation)) == 0
    assert list((registry.home / "work").iterdir()) == []  # every attempt's scratch dir is gone


def test_a_permanent_error_fails_at_once(
    registry: Registry, family: Family, domain_files: tuple[Path, Path]
) -> None:
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v1", str(family.v1))
        domains.create_domain(s, "docs")
        datasets.add_dataset(s, registry.store, "docs", "notes", domain_files[0], "train")
        job, _ = training.enqueue_train(s, domain="docs", base="tiny:v1", method="lora", args={"steps": 2})
    yesterday = datasets.today() - timedelta(days=1)
    with transaction(registry.factory) as s:  # the data-use agreement ended before a worker came
        s.execute(update(Dataset).values(available_until=yesterday))

    assert make_worker(registry).run(until_idle=True) == 1
    ended = show(registry, job.id)
    assert (ended.status, ended.attempts) == ("failed", 1)
    assert ended.error is not None and ended.error.startswith("data_unavailable: ")
    assert str(yesterday) in ended.error and "docs/notes" in ended.error
    assert actions(registry, job.id) == ["job.enqueue", "job.failed"]
    with transaction(registry.factory) as s:
        assert s.scalar(select(func.count()).select_from(Patch)) == 0


def test_cancelling_a_running_job_stops_it_and_records_nothing(registry: Registry) -> None:
    finished = threading.Event()
    steps: list[int] = []

    def slow(ctx: JobContext) -> dict[str, Any]:
        for i in range(1, 2001):
            ctx.progress(i, 2000, f"step {i}")  # raises JobCancelled once the heartbeat saw the cancel
            steps.append(i)
            time.sleep(0.005)
        finished.set()
        return {"finished": True}

    with transaction(registry.factory) as s:
        job, _ = jobs.enqueue(s, "train", {"slow": True})
    worker = make_worker(registry, lease=0.6, handlers={"train": slow})
    ran: list[JobRead | None] = []
    thread = threading.Thread(target=lambda: ran.append(worker.run_one()))
    thread.start()
    wait_for(lambda: (show(registry, job.id).progress.get("done") or 0) > 0)  # a heartbeat stored it
    with transaction(registry.factory) as s:
        assert jobs.cancel(s, job.id).status == "cancelled"
    thread.join(20)
    assert not thread.is_alive() and not finished.is_set() and len(steps) < 2000

    (ended,) = ran
    assert ended is not None and ended.status == "cancelled" and ended.result is None
    assert show(registry, job.id).status == "cancelled" and show(registry, job.id).result is None
    assert "job.succeeded" not in actions(registry, job.id)
    assert list((registry.home / "work").iterdir()) == []


def test_a_job_cancelled_before_it_commits_keeps_nothing_it_made(registry: Registry) -> None:
    go = threading.Event()
    started = threading.Event()

    def stubborn(ctx: JobContext) -> dict[str, Any]:  # never reports progress, commits at the end
        started.set()
        go.wait(20)
        with ctx.transaction() as s:
            domains.create_domain(s, "made-by-the-job")
            ctx.complete_in(s, {"made": True})
        return {"made": True}

    with transaction(registry.factory) as s:
        job, _ = jobs.enqueue(s, "train", {})
    worker = make_worker(registry, handlers={"train": stubborn})
    ran: list[JobRead | None] = []
    thread = threading.Thread(target=lambda: ran.append(worker.run_one()))
    thread.start()
    assert started.wait(20)
    with transaction(registry.factory) as s:
        jobs.cancel(s, job.id)
    go.set()
    thread.join(20)
    assert not thread.is_alive() and ran[0] is not None and ran[0].status == "cancelled"
    ended = show(registry, job.id)
    assert ended.status == "cancelled" and ended.result is None
    with transaction(registry.factory) as s:
        assert s.scalar(select(func.count()).select_from(Domain)) == 0  # rolled back with the success


def test_an_expired_lease_is_reclaimed_by_another_worker(registry: Registry, family: Family) -> None:
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v1", str(family.v1))
        job_id = bases.register_base(s, "tiny:v2", str(family.v2), parent="tiny:v1").port_all_job
    assert job_id is not None
    dead, alive = make_worker(registry, "dead", lease=1.0), make_worker(registry, "alive")
    claimed = dead.claim()  # ... and the worker dies without a word
    assert claimed is not None and claimed.id == job_id and claimed.attempts == 1
    assert alive.run_one() is None  # the lease still holds

    assert alive.run(until_idle=True) == 1  # waits for the lease to run out, then takes the job
    ended = show(registry, job_id)
    assert (ended.status, ended.attempts, ended.worker) == ("succeeded", 2, "alive")
    assert ended.result == {"base": "tiny:v2", "ports": [], "domains_without_patches": []}
    with transaction(registry.factory) as s:
        (reclaim,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "job.reclaim"))
        assert reclaim.subject == job_id and reclaim.detail == {"previous_worker": "dead", "worker": "alive"}
        # the dead worker coming back can neither renew nor finish what it lost
        assert not jobs.heartbeat(s, job_id, "dead", lease_seconds=30)
        assert not jobs.complete(s, job_id, "dead", {"late": True})
    assert show(registry, job_id).result == ended.result


def test_a_worker_lost_on_the_last_attempt_ends_the_job_failed(registry: Registry) -> None:
    with transaction(registry.factory) as s:
        job, _ = jobs.enqueue(s, "port_all", {"base": "tiny:v9"}, max_attempts=1)
    dead, alive = make_worker(registry, "dead", lease=0.3), make_worker(registry, "alive")
    assert dead.claim() is not None
    time.sleep(0.4)
    assert alive.run_one() is None  # nothing left to run: the job is out of attempts
    ended = show(registry, job.id)
    assert (ended.status, ended.attempts) == ("failed", 1)
    assert ended.error is not None and "dead stopped responding on the last attempt" in ended.error


def test_a_port_that_dies_before_completing_records_its_evaluations_once(
    registry: Registry, family: Family, domain_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The measurements, the retrain decision and the job's success commit together: a worker that
    dies between recording and completing leaves nothing recorded, and the rerun records once."""
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v1", str(family.v1))
        bases.register_base(s, "tiny:v2", str(family.v2), parent="tiny:v1")
        domains.create_domain(s, "docs")
        datasets.add_dataset(s, registry.store, "docs", "quiz", domain_files[1], "eval")
        source = patches.register_patch(
            s,
            registry.store,
            "docs",
            "tiny:v1",
            write_patch(Path(registry.home) / "p.safetensors"),
            "imported",
        )
        job, _ = jobs.enqueue(s, "port", {"patch_id": source.id, "base": "tiny:v2"}, dedupe_key="port:test")

    def evaluations() -> int:
        with transaction(registry.factory) as s:
            return int(s.scalar(select(func.count()).select_from(Evaluation)) or 0)

    real_complete = JobContext.complete_in
    calls = []

    def dies_the_first_time(self: JobContext, session: Any, result: dict[str, Any]) -> None:
        calls.append(self.job.attempts)
        if len(calls) == 1:
            raise RuntimeError("the worker died right after recording")
        real_complete(self, session, result)

    monkeypatch.setattr(JobContext, "complete_in", dies_the_first_time)
    worker = make_worker(registry, handlers={"port": port_handler.run})
    assert worker.run_one() is not None
    first = show(registry, job.id)
    assert (first.status, first.attempts) == ("queued", 1)
    assert (first.error or "").startswith("internal_error: unexpected RuntimeError")
    with transaction(registry.factory) as s:
        assert "worker died" in (jobs.show_job(s, job.id, debug=True).error_detail or "")
    assert evaluations() == 0  # rolled back with the failed completion

    assert worker.run_one() is not None
    assert show(registry, job.id).status == "succeeded"
    assert evaluations() == 4  # base, ported, source_base, source on the one eval set: once each
    with transaction(registry.factory) as s:
        ported = s.scalars(select(Patch).where(Patch.origin == "ported")).all()
    assert len(ported) == 1 and ported[0].status in ("validated", "degraded")
