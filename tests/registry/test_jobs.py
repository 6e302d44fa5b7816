"""The job queue on SQLite and PostgreSQL: enqueue, claim under a lease, renew, finish, retry, cancel."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from core.errors import Ambiguous, InvalidInput, InvalidState, NotFound
from registry.db import make_engine, session_factory, transaction, utcnow
from registry.models import Job
from registry.schemas import JobRead
from registry.services import audit, jobs
from tests.conftest import Registry
from tests.helpers import NothingWritten

LEASE = 60.0


def enqueue(reg: Registry, kind: str = "train", payload: dict[str, Any] | None = None, **kw: Any) -> JobRead:
    with transaction(reg.factory) as s:
        job, created = jobs.enqueue(s, kind, payload or {}, **kw)
    assert created
    return job


def claim(reg: Registry, worker: str, lease: float = LEASE, **kw: Any) -> JobRead | None:
    with transaction(reg.factory) as s:
        s.info["actor"] = f"worker:{worker}"
        return jobs.claim(s, worker, lease_seconds=lease, **kw)


def show(reg: Registry, job_id: str) -> JobRead:
    with transaction(reg.factory) as s:
        return jobs.show_job(s, job_id)


def set_row(reg: Registry, job_id: str, **values: Any) -> None:
    """Move a job in time (run_after, lease_until) without waiting."""
    with transaction(reg.factory) as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values))


def actions(reg: Registry, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    with transaction(reg.factory) as s:
        return [(e.action, e.detail) for e in reversed(audit.list_events(s, subject=job_id))]


def count_jobs(reg: Registry) -> int:
    with transaction(reg.factory) as s:
        return s.scalar(select(func.count()).select_from(Job)) or 0


def close_to(when: datetime | None, expected: datetime, slack: float = 5.0) -> bool:
    assert when is not None
    return abs((when - expected).total_seconds()) < slack


# --- enqueue ---------------------------------------------------------------------------------------


def test_enqueue_is_idempotent_under_a_dedupe_key(registry: Registry) -> None:
    with transaction(registry.factory) as s:
        first, created = jobs.enqueue(s, "port_all", {"base": "tiny:v2"}, dedupe_key="port_all:7")
    assert created and first.status == "queued" and first.attempts == 0 and first.max_attempts == 3
    with transaction(registry.factory) as s:
        again, created_again = jobs.enqueue(s, "port_all", {"base": "other"}, dedupe_key="port_all:7")
    assert not created_again
    assert again.id == first.id and again.payload == {"base": "tiny:v2"}  # the first one's, unchanged
    assert count_jobs(registry) == 1
    assert [a for a, _ in actions(registry, first.id)] == ["job.enqueue"]

    # without a key every enqueue is a new job
    enqueue(registry, "evaluate", {"patch_id": "p"})
    enqueue(registry, "evaluate", {"patch_id": "p"})
    assert count_jobs(registry) == 3


def test_enqueue_refuses_bad_kind_and_attempts_writing_nothing(registry: Registry) -> None:
    # the transaction commits: anything the service wrote before refusing would stay
    with NothingWritten(registry.engine, registry.store.root), transaction(registry.factory) as s:
        with pytest.raises(InvalidInput, match="invalid job kind 'deploy'"):
            jobs.enqueue(s, "deploy", {})
        with pytest.raises(InvalidInput, match="max_attempts"):
            jobs.enqueue(s, "train", {}, max_attempts=0)
        with pytest.raises(InvalidInput):
            jobs.enqueue(s, "train", {}, dedupe_key="k", max_attempts=-1)
    assert count_jobs(registry) == 0


def test_concurrent_enqueue_with_one_key_makes_one_job(registry: Registry) -> None:
    """The second writer waits for the first one's uncommitted insert and then returns its job."""
    other_engine = make_engine(registry.url)
    other = session_factory(other_engine)
    seen: list[tuple[JobRead, bool]] = []
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with transaction(other) as s:
                seen.append(jobs.enqueue(s, "train", {"who": "second"}, dedupe_key="race"))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    try:
        with transaction(registry.factory) as s:
            mine, created = jobs.enqueue(s, "train", {"who": "first"}, dedupe_key="race")
            assert created
            racer = threading.Thread(target=second)
            racer.start()
            time.sleep(0.3)  # the racer is now blocked on our row (PostgreSQL) or the write lock (SQLite)
        racer.join(timeout=30)
        assert not racer.is_alive() and not errors, errors
    finally:
        other_engine.dispose()
    ((theirs, theirs_created),) = seen
    assert not theirs_created and theirs.id == mine.id and theirs.payload == {"who": "first"}
    assert count_jobs(registry) == 1


# --- claim -----------------------------------------------------------------------------------------


def test_claim_takes_the_oldest_claimable_job_then_none(registry: Registry) -> None:
    a = enqueue(registry, payload={"n": "a"})
    b = enqueue(registry, payload={"n": "b"})
    # enqueued last, but due an hour ago: it is the oldest claimable
    early = enqueue(registry, "evaluate", payload={"n": "early"}, run_after=utcnow() - timedelta(hours=1))

    got = claim(registry, "w1", kinds=("train",))
    assert got is not None and got.id == a.id  # kinds filter skips the older evaluate job
    assert got.status == "running" and got.worker == "w1" and got.attempts == 1
    assert close_to(got.lease_until, utcnow() + timedelta(seconds=LEASE)) and got.started_at is not None

    assert [j.id for j in (claim(registry, "w1"), claim(registry, "w1"))] == [early.id, b.id]
    assert claim(registry, "w1") is None
    assert claim(registry, "w2", kinds=("port",)) is None


def test_a_job_due_later_is_not_claimed_until_then(registry: Registry) -> None:
    job = enqueue(registry, run_after=utcnow() + timedelta(hours=1))
    assert claim(registry, "w1") is None
    assert show(registry, job.id).status == "queued"
    set_row(registry, job.id, run_after=utcnow() - timedelta(seconds=1))
    got = claim(registry, "w1")
    assert got is not None and got.id == job.id


def test_a_claimed_job_is_not_claimed_again_while_its_lease_holds(registry: Registry) -> None:
    job = enqueue(registry)
    assert claim(registry, "w1").id == job.id
    assert claim(registry, "w2") is None
    assert claim(registry, "w1") is None  # not even by its own worker
    held = show(registry, job.id)
    assert (held.status, held.worker, held.attempts) == ("running", "w1", 1)


def test_an_expired_lease_is_reclaimed_by_another_worker(registry: Registry) -> None:
    job = enqueue(registry, max_attempts=3)
    assert claim(registry, "w1", lease=0.05).id == job.id
    time.sleep(0.15)

    taken = claim(registry, "w2")
    assert taken is not None and taken.id == job.id
    assert (taken.status, taken.worker, taken.attempts) == ("running", "w2", 2)
    assert close_to(taken.lease_until, utcnow() + timedelta(seconds=LEASE))
    reclaims = [d for a, d in actions(registry, job.id) if a == "job.reclaim"]
    assert reclaims == [{"previous_worker": "w1", "worker": "w2"}]

    # the worker that lost it can no longer touch it
    with transaction(registry.factory) as s:
        assert jobs.heartbeat(s, job.id, "w1", lease_seconds=LEASE, message="still here") is False
        assert jobs.complete(s, job.id, "w1", {"by": "w1"}) is False
        assert jobs.fail(s, job.id, "w1", "boom") is None
    after = show(registry, job.id)
    assert (after.status, after.worker, after.result, after.error, after.message) == (
        "running",
        "w2",
        None,
        None,
        "",
    )


def test_a_lease_lost_on_the_last_attempt_fails_the_job_naming_the_lost_worker(registry: Registry) -> None:
    doomed = enqueue(registry, max_attempts=2, payload={"n": "doomed"})
    assert claim(registry, "w1", lease=0.05).id == doomed.id
    time.sleep(0.15)
    assert claim(registry, "w2", lease=0.05).id == doomed.id  # attempt 2 of 2
    later = enqueue(registry, payload={"n": "later"})
    time.sleep(0.15)

    got = claim(registry, "w3")  # gives up on the doomed job and takes the next one
    assert got is not None and got.id == later.id and got.worker == "w3"
    ended = show(registry, doomed.id)
    assert ended.status == "failed" and ended.attempts == 2 and ended.finished_at is not None
    assert ended.error is not None and "worker w2 stopped responding" in ended.error
    assert "2 of 2" in ended.error and ended.worker == "w2"
    assert "job.failed" in [a for a, _ in actions(registry, doomed.id)]
    assert claim(registry, "w4") is None


# --- heartbeat, complete ---------------------------------------------------------------------------


def test_heartbeat_renews_the_lease_and_stores_progress(registry: Registry) -> None:
    job = enqueue(registry)
    first = claim(registry, "w1", lease=30)
    with transaction(registry.factory) as s:
        assert jobs.heartbeat(
            s, job.id, "w1", lease_seconds=600, progress={"done": 2, "total": 8}, message="step 2/8"
        )
    beat = show(registry, job.id)
    assert beat.lease_until > first.lease_until
    assert close_to(beat.lease_until, utcnow() + timedelta(seconds=600))
    assert beat.progress == {"done": 2, "total": 8} and beat.message == "step 2/8"

    with transaction(registry.factory) as s:  # a plain renewal keeps what was reported
        assert jobs.heartbeat(s, job.id, "w1", lease_seconds=600)
        assert jobs.heartbeat(s, job.id, "someone-else", lease_seconds=600) is False
    kept = show(registry, job.id)
    assert kept.progress == {"done": 2, "total": 8} and kept.message == "step 2/8"

    with transaction(registry.factory) as s:
        jobs.cancel(s, job.id)
    with transaction(registry.factory) as s:
        assert jobs.heartbeat(s, job.id, "w1", lease_seconds=600, message="ignored") is False
    assert show(registry, job.id).message == "step 2/8"


def test_complete_by_the_holder_only(registry: Registry) -> None:
    job = enqueue(registry)
    claim(registry, "w1")
    before = show(registry, job.id)
    with transaction(registry.factory) as s:
        assert jobs.complete(s, job.id, "intruder", {"patch_id": "x"}) is False
    assert show(registry, job.id).model_dump() == before.model_dump()

    with transaction(registry.factory) as s:
        assert jobs.complete(s, job.id, "w1", {"patch_id": "p1"}) is True
    done = show(registry, job.id)
    assert (done.status, done.result, done.lease_until) == ("succeeded", {"patch_id": "p1"}, None)
    assert done.finished_at is not None
    with transaction(registry.factory) as s:
        assert jobs.complete(s, job.id, "w1", {"patch_id": "p2"}) is False
    assert show(registry, job.id).result == {"patch_id": "p1"}
    assert claim(registry, "w2") is None


# --- fail, retry with backoff ----------------------------------------------------------------------


def test_fail_backs_off_doubling_then_fails_after_max_attempts(registry: Registry) -> None:
    job = enqueue(registry, max_attempts=3)
    for attempt, delay in ((1, 10), (2, 20)):
        got = claim(registry, "w1")
        assert got is not None and got.attempts == attempt
        with transaction(registry.factory) as s:
            failed = jobs.fail(s, job.id, "w1", f"oom on attempt {attempt}", backoff_seconds=10)
        assert failed is not None and failed.status == "queued"
        assert failed.error == f"oom on attempt {attempt}" and failed.worker is None
        assert failed.lease_until is None
        assert close_to(failed.run_after, utcnow() + timedelta(seconds=delay), slack=3)
        assert show(registry, job.id).model_dump() == failed.model_dump()
        assert claim(registry, "w2") is None  # backing off
        set_row(registry, job.id, run_after=utcnow() - timedelta(seconds=1))

    got = claim(registry, "w1")
    assert got is not None and got.attempts == 3 and got.error is None  # a fresh attempt clears it
    with transaction(registry.factory) as s:
        final = jobs.fail(s, job.id, "w1", "oom for good", backoff_seconds=10)
    assert final is not None and (final.status, final.error, final.attempts) == ("failed", "oom for good", 3)
    assert final.finished_at is not None and final.lease_until is None
    assert claim(registry, "w2") is None
    names = [a for a, _ in actions(registry, job.id)]
    assert names.count("job.retry_scheduled") == 2 and names[-1] == "job.failed"


def test_a_permanent_failure_ends_the_job_at_once(registry: Registry) -> None:
    job = enqueue(registry, max_attempts=5)
    claim(registry, "w1")
    with transaction(registry.factory) as s:
        ended = jobs.fail(s, job.id, "w1", "invalid_input: no such setting", retry=False)
    assert ended is not None and (ended.status, ended.attempts) == ("failed", 1)
    assert show(registry, job.id).error == "invalid_input: no such setting"
    assert claim(registry, "w1") is None


# --- cancel, retry ---------------------------------------------------------------------------------


def test_cancel_queued_and_running_jobs(registry: Registry) -> None:
    queued = enqueue(registry)
    with transaction(registry.factory) as s:
        assert jobs.cancel(s, queued.id).status == "cancelled"
    assert claim(registry, "w1") is None

    running = enqueue(registry)
    assert claim(registry, "w1").id == running.id
    with transaction(registry.factory) as s:
        cancelled = jobs.cancel(s, running.id[:6])  # a prefix works too
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    with transaction(registry.factory) as s:
        assert jobs.complete(s, running.id, "w1", {"late": True}) is False
        assert jobs.fail(s, running.id, "w1", "late") is None
    after = show(registry, running.id)
    assert (after.status, after.result, after.error) == ("cancelled", None, None)
    details = [d for a, d in actions(registry, running.id) if a == "job.cancel"]
    assert details == [{"kind": "train", "previous": "running"}]


def test_cancel_a_finished_job_is_refused(registry: Registry) -> None:
    done = enqueue(registry)
    claim(registry, "w1")
    with transaction(registry.factory) as s:
        jobs.complete(s, done.id, "w1", {})
    cancelled = enqueue(registry)
    with transaction(registry.factory) as s:
        jobs.cancel(s, cancelled.id)
    for job_id, status in ((done.id, "succeeded"), (cancelled.id, "cancelled")):
        with transaction(registry.factory) as s, pytest.raises(InvalidState, match=f"already {status}"):
            jobs.cancel(s, job_id)
        assert show(registry, job_id).status == status


def test_retry_queues_failed_and_cancelled_jobs_with_fresh_attempts(registry: Registry) -> None:
    failed = enqueue(registry, max_attempts=1)
    claim(registry, "w1")
    with transaction(registry.factory) as s:
        jobs.heartbeat(s, failed.id, "w1", lease_seconds=LEASE, progress={"done": 1}, message="m")
        jobs.fail(s, failed.id, "w1", "boom")
    cancelled = enqueue(registry)
    with transaction(registry.factory) as s:
        jobs.cancel(s, cancelled.id)

    for job in (failed, cancelled):
        with transaction(registry.factory) as s:
            again = jobs.retry(s, job.id)
        assert (again.status, again.attempts, again.error, again.result) == ("queued", 0, None, None)
        assert again.worker is None and again.finished_at is None and again.started_at is None
        assert again.progress == {} and again.message == ""
        assert close_to(again.run_after, utcnow())
    claimed = {claim(registry, "w2").id, claim(registry, "w2").id}
    assert claimed == {failed.id, cancelled.id}
    assert show(registry, failed.id).attempts == 1


def test_retry_of_a_queued_running_or_succeeded_job_is_refused(registry: Registry) -> None:
    queued = enqueue(registry)
    running = enqueue(registry)
    succeeded = enqueue(registry)
    set_row(registry, queued.id, run_after=utcnow() + timedelta(hours=1))
    claim(registry, "w1")
    claim(registry, "w1")
    with transaction(registry.factory) as s:
        jobs.complete(s, succeeded.id, "w1", {})
    for job, status in ((queued, "queued"), (running, "running"), (succeeded, "succeeded")):
        before = show(registry, job.id)
        assert before.status == status
        with transaction(registry.factory) as s, pytest.raises(InvalidState, match=f"is {status}"):
            jobs.retry(s, job.id)
        assert show(registry, job.id).model_dump() == before.model_dump()


# --- list, show ------------------------------------------------------------------------------------


def test_list_filters_by_status_and_kind_newest_first(registry: Registry) -> None:
    t1 = enqueue(registry, "train")
    e1 = enqueue(registry, "evaluate")
    t2 = enqueue(registry, "train")
    claim(registry, "w1", kinds=("evaluate",))
    with transaction(registry.factory) as s:
        assert [j.id for j in jobs.list_jobs(s)] == [t2.id, e1.id, t1.id]
        assert [j.id for j in jobs.list_jobs(s, kind="train")] == [t2.id, t1.id]
        assert [j.id for j in jobs.list_jobs(s, status="running")] == [e1.id]
        assert [j.id for j in jobs.list_jobs(s, status="queued", kind="train", limit=1)] == [t2.id]
        assert jobs.list_jobs(s, status="failed") == []
        assert jobs.list_jobs(s, kind="port") == []
        with pytest.raises(InvalidInput, match="invalid status"):
            jobs.list_jobs(s, status="done")
        with pytest.raises(InvalidInput, match="invalid job kind"):
            jobs.list_jobs(s, kind="deploy")


def test_show_by_id_or_unique_prefix(registry: Registry) -> None:
    with transaction(registry.factory) as s:
        s.add_all(
            [
                Job(id="abcd00000001", kind="train", payload={}),
                Job(id="abcd00000002", kind="evaluate", payload={}),
            ]
        )
    with transaction(registry.factory) as s:
        assert jobs.show_job(s, "abcd00000001").kind == "train"
        assert jobs.show_job(s, "ABCD00000002").kind == "evaluate"  # ids are case-insensitive
        assert jobs.show_job(s, " abcd00000002 ").kind == "evaluate"
        with pytest.raises(Ambiguous, match="abcd"):
            jobs.show_job(s, "abcd")
        with pytest.raises(NotFound, match="no job with id 0123"):
            jobs.show_job(s, "0123")
        for bad in ("abc", "xyz1", "abcd-0000", "abcd000000011", ""):
            with pytest.raises(InvalidInput, match="invalid job id"):
                jobs.show_job(s, bad)
