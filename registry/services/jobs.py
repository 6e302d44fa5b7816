"""The work queue: enqueue (deduplicated), claim under a lease, renew, finish, retry, cancel.

A claim is one atomic step on both backends: PostgreSQL locks the chosen row with
`FOR UPDATE SKIP LOCKED`, so concurrent workers each skip to a different job; SQLite, which has no
row locks, claims with a conditional UPDATE that only matches while the job is still claimable, and
the first writer wins. A running job whose lease has expired (its worker died) is claimable again;
each claim counts an attempt, and a job out of attempts ends `failed` instead of running again.
Like every service these functions never commit: the caller's transaction makes each step durable.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, or_, select, update
from sqlalchemy.orm import Session

from core.errors import InvalidInput, InvalidState
from core.vocab import JOB_KINDS, JOB_STATUSES
from registry import pagination
from registry.conflicts import insert_or_ignore
from registry.db import utcnow
from registry.models import Job, short_id
from registry.pagination import Page
from registry.schemas import JobRead
from registry.services import audit
from registry.services.lookup import by_id_prefix

FINISHED = ("succeeded", "failed", "cancelled")


def to_read(job: Job, *, debug: bool = False) -> JobRead:
    """The job as callers see it. `error` is its first line, the one-line message; the whole text
    (with a traceback for an unexpected failure) is `error_detail`, for `debug` callers only: a
    traceback shows server paths and code to anyone who may read jobs."""
    read = JobRead.model_validate(job)
    if job.error is None:
        return read
    return read.model_copy(
        update={"error": error_summary(job.error), "error_detail": job.error if debug else None}
    )


def error_summary(error: str) -> str:
    """The one-line message of a stored job error (its first line)."""
    return error.split("\n", 1)[0]


def get_job(session: Session, id_or_prefix: str) -> Job:
    """A job by its id or any unique prefix of at least 4 characters."""
    return by_id_prefix(session, Job, "job", id_or_prefix)


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    *,
    dedupe_key: str | None = None,
    max_attempts: int = 3,
    run_after: datetime | None = None,
) -> tuple[JobRead, bool]:
    """Add a job, or return the one already recorded under `dedupe_key`: (job, created).

    The unique dedupe key makes enqueueing idempotent even when two writers race: the loser's
    insert does nothing and it returns the winner's job.
    """
    if kind not in JOB_KINDS:
        raise InvalidInput(f"invalid job kind {kind!r}: expected one of {', '.join(JOB_KINDS)}")
    if max_attempts < 1:
        raise InvalidInput("max_attempts must be at least 1")
    if dedupe_key is not None:
        existing = session.scalar(select(Job).where(Job.dedupe_key == dedupe_key))
        if existing is not None:
            return to_read(existing), False
    values = {
        "id": short_id(),
        "kind": kind,
        "payload": payload,
        "dedupe_key": dedupe_key,
        "max_attempts": max_attempts,
        "run_after": run_after or utcnow(),
    }
    # INSERT … ON CONFLICT DO NOTHING: atomic on both backends, no savepoint (registry.conflicts).
    if not insert_or_ignore(session, Job, values, ["dedupe_key"]):
        existing = session.scalar(select(Job).where(Job.dedupe_key == dedupe_key))
        assert existing is not None  # the conflicting row is committed, hence visible
        return to_read(existing), False
    job = session.get(Job, values["id"], populate_existing=True)
    assert job is not None
    audit.record(session, "job.enqueue", job.id, kind=kind, dedupe_key=dedupe_key)
    return to_read(job), True


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _claimable(now: datetime) -> Any:
    return or_(
        and_(Job.status == "queued", Job.run_after <= now),
        and_(Job.status == "running", Job.lease_until < now),
    )


def claim(
    session: Session, worker: str, *, lease_seconds: float, kinds: Sequence[str] | None = None
) -> JobRead | None:
    """Take the oldest claimable job for `worker` under a fresh lease, or None when there is none."""
    now = utcnow()
    while True:
        stmt = select(Job).where(_claimable(now)).order_by(Job.run_after, Job.created_at).limit(1)
        if kinds:
            stmt = stmt.where(Job.kind.in_(kinds))
        if _dialect(session) == "postgresql":
            job = session.scalar(stmt.with_for_update(skip_locked=True))
            if job is None:
                return None
            previous_worker = job.worker
        else:
            job = session.scalar(stmt)
            if job is None:
                return None
            previous_worker = job.worker  # the conditional UPDATE below overwrites it
            # SQLite: the conditional UPDATE is the claim; a job someone else took no longer matches.
            taken = session.execute(
                update(Job)
                .where(Job.id == job.id, Job.status == job.status, _claimable(now))
                .values(worker=worker, lease_until=now + timedelta(seconds=lease_seconds))
                .execution_options(synchronize_session=False)
            )
            if getattr(taken, "rowcount", 0) != 1:  # a CursorResult: UPDATE reports its row count
                session.expire(job)
                continue
            session.refresh(job)
        if job.status == "running" and job.attempts >= job.max_attempts:
            job.worker = previous_worker
            _finish(
                job,
                "failed",
                error=f"worker {previous_worker} stopped responding on the last attempt"
                f" ({job.attempts} of {job.max_attempts}); giving up",
            )
            audit.record(session, "job.failed", job.id, kind=job.kind, error=error_summary(job.error or ""))
            session.flush()
            continue
        if job.status == "running":
            audit.record(session, "job.reclaim", job.id, previous_worker=previous_worker, worker=worker)
        job.status = "running"
        job.worker = worker
        job.lease_until = now + timedelta(seconds=lease_seconds)
        job.attempts += 1
        job.started_at = now
        job.error = None
        session.flush()
        return to_read(job)


def _owned(session: Session, job_id: str, worker: str) -> Job | None:
    """The job while `worker` still holds it (running under its lease), else None."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or job.status != "running" or job.worker != worker:
        return None
    return job


def heartbeat(
    session: Session,
    job_id: str,
    worker: str,
    *,
    lease_seconds: float,
    progress: dict[str, Any] | None = None,
    message: str | None = None,
) -> bool:
    """Renew the lease and store progress; False when the job was cancelled or taken over."""
    job = _owned(session, job_id, worker)
    if job is None:
        return False
    job.lease_until = utcnow() + timedelta(seconds=lease_seconds)
    if progress is not None:
        job.progress = progress
    if message is not None:
        job.message = message
    session.flush()
    return True


def complete(session: Session, job_id: str, worker: str, result: dict[str, Any]) -> bool:
    """Mark the job succeeded; False (and nothing changed) when `worker` no longer holds it."""
    job = _owned(session, job_id, worker)
    if job is None:
        return False
    _finish(job, "succeeded", result=result)
    audit.record(session, "job.succeeded", job.id, kind=job.kind, attempts=job.attempts)
    return True


def fail(
    session: Session, job_id: str, worker: str, error: str, *, retry: bool = True, backoff_seconds: float = 30
) -> JobRead | None:
    """Record a failed attempt: queue it again after a backoff that doubles per attempt, or, when
    the error is permanent or the attempts are spent, end it `failed` with the error kept."""
    job = _owned(session, job_id, worker)
    if job is None:
        return None
    if retry and job.attempts < job.max_attempts:
        job.status = "queued"
        job.error = error
        job.worker = None
        job.lease_until = None
        job.run_after = utcnow() + timedelta(seconds=backoff_seconds * 2 ** (job.attempts - 1))
        audit.record(session, "job.retry_scheduled", job.id, attempt=job.attempts, error=error_summary(error))
    else:
        _finish(job, "failed", error=error)
        summary = error_summary(error)  # the audit log is readable with a read token
        audit.record(session, "job.failed", job.id, kind=job.kind, attempts=job.attempts, error=summary)
    session.flush()
    return to_read(job)


def _finish(job: Job, status: str, *, result: dict[str, Any] | None = None, error: str | None = None) -> None:
    job.status = status
    job.lease_until = None
    job.finished_at = utcnow()
    if result is not None:
        job.result = result
    if error is not None:
        job.error = error


def cancel(session: Session, job_id: str) -> JobRead:
    """Cancel a queued or running job; a running one stops at its worker's next lease renewal."""
    job = get_job(session, job_id)
    if job.status in FINISHED:
        raise InvalidState(f"job {job.id} is already {job.status}")
    previous = job.status
    _finish(job, "cancelled")
    session.flush()
    audit.record(session, "job.cancel", job.id, kind=job.kind, previous=previous)
    return to_read(job)


def retry(session: Session, job_id: str) -> JobRead:
    """Queue a failed or cancelled job again with a fresh set of attempts."""
    job = get_job(session, job_id)
    if job.status not in ("failed", "cancelled"):
        raise InvalidState(f"job {job.id} is {job.status}; only failed or cancelled jobs can be retried")
    previous = job.status
    job.status, job.attempts, job.error, job.result = "queued", 0, None, None
    job.worker = job.lease_until = job.finished_at = job.started_at = None
    job.run_after = utcnow()
    job.progress, job.message = {}, ""
    session.flush()
    audit.record(session, "job.retry", job.id, kind=job.kind, previous=previous)
    return to_read(job)


JOBS_ORDER = (Job.created_at, Job.id)  # walked newest first; ix_jobs_created


def _jobs(status: str | None, kind: str | None) -> Select[Job]:
    stmt = select(Job)
    if status is not None:
        if status not in JOB_STATUSES:
            raise InvalidInput(f"invalid status {status!r}: expected one of {', '.join(JOB_STATUSES)}")
        stmt = stmt.where(Job.status == status)
    if kind is not None:
        if kind not in JOB_KINDS:
            raise InvalidInput(f"invalid job kind {kind!r}: expected one of {', '.join(JOB_KINDS)}")
        stmt = stmt.where(Job.kind == kind)
    return stmt


def page_jobs(
    session: Session,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    debug: bool = False,
) -> Page[JobRead]:
    """Jobs newest first; `debug` keeps each failure's traceback (admins only)."""
    page = pagination.keyset(
        session,
        _jobs(status, kind),
        JOBS_ORDER,
        lambda j: (j.created_at, j.id),
        limit=limit,
        cursor=cursor,
        descending=True,
    )
    return Page([to_read(j, debug=debug) for j in page.items], page.next_cursor)


def list_jobs(
    session: Session,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    debug: bool = False,
) -> list[JobRead]:
    """The newest `limit` jobs (internal callers; users get `page_jobs`)."""
    return page_jobs(session, status=status, kind=kind, limit=limit, debug=debug).items


def show_job(session: Session, job_id: str, *, debug: bool = False) -> JobRead:
    return to_read(get_job(session, job_id), debug=debug)
