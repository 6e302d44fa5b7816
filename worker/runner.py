"""The worker loop: claim a job, run its handler under a renewed lease, record the outcome.

One job at a time per worker; run as many workers as there are devices, on as many machines as
share the database and the artifact store. A worker killed mid-job simply stops renewing its lease;
the job becomes claimable again when the lease expires, and handlers are written so that a rerun
never duplicates what the first attempt committed.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from core.errors import PatchregError
from registry.db import transaction
from registry.schemas import JobRead
from registry.services import jobs
from registry.store import ArtifactStore
from worker.context import JobCancelled, JobContext, ProgressState

if TYPE_CHECKING:
    from trainer.resident import ResidentModels

Handler = Callable[[JobContext], dict[str, Any]]
MODEL_JOBS = frozenset({"port", "evaluate", "train", "importance"})  # the kinds that borrow resident bases


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class WorkerConfig:
    work_root: Path
    name: str = field(default_factory=default_worker_name)
    device: str = "auto"
    lease_seconds: float = 60.0
    poll_seconds: float = 2.0
    backoff_seconds: float = 30.0
    kinds: tuple[str, ...] | None = None
    model_cache_bytes: int | None = None  # None: `trainer.resident.default_budget(device)`; 0: keep none

    @property
    def heartbeat_seconds(self) -> float:
        return max(0.2, min(self.lease_seconds / 3, 2.0))


JobEvent = Callable[[str, JobRead, dict[str, Any]], None]  # ("start"|"progress"|"end", job, info)


class Worker:
    def __init__(
        self,
        factory: sessionmaker[Session],
        store: ArtifactStore,
        config: WorkerConfig,
        handlers: dict[str, Handler] | None = None,
        on_event: JobEvent | None = None,
    ) -> None:
        if handlers is None:
            from worker.handlers import HANDLERS as default_handlers

            handlers = dict(default_handlers)
        self.factory, self.store, self.config = factory, store, config
        self.handlers: dict[str, Handler] = handlers
        self.on_event = on_event
        self.stop_requested = threading.Event()
        self._models: ResidentModels | None = None

    @property
    def models(self) -> ResidentModels:
        """The bases this worker keeps loaded between jobs (created on first use: torch loads lazily)."""
        if self._models is None:
            from trainer.resident import ResidentModels, default_budget

            budget = self.config.model_cache_bytes
            device = self.config.device
            self._models = ResidentModels(default_budget(device) if budget is None else budget, device)
        return self._models

    def _transaction(self) -> AbstractContextManager[Session]:
        return transaction(self.factory, f"worker:{self.config.name}")

    def claim(self) -> JobRead | None:
        kinds = self.config.kinds or tuple(self.handlers)
        with self._transaction() as s:
            return jobs.claim(s, self.config.name, lease_seconds=self.config.lease_seconds, kinds=kinds)

    def run_one(self) -> JobRead | None:
        """Claim and run one job; None when none was claimable. Returns the job as it ended."""
        job = self.claim()
        if job is None:
            return None
        self._emit("start", job, {})
        work_dir = self._fresh_work_dir(job)
        ctx = JobContext(
            job=job,
            worker=self.config.name,
            factory=self.factory,
            store=self.store,
            device=self.config.device,
            work_dir=work_dir,
            state=ProgressState(),
            models=self.models if job.kind in MODEL_JOBS else None,
            on_progress=(lambda j, p, m: self._emit("progress", j, {"progress": p, "message": m})),
        )
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(ctx, beat_stop), daemon=True)
        beat.start()
        try:
            with self.store.verified_once():  # a job hashes each blob it reads once
                result = self.handlers[job.kind](ctx)
            beat_stop.set()
            beat.join()
            if not ctx.completed:
                with self._transaction() as s:
                    if not jobs.complete(s, job.id, self.config.name, result):
                        raise JobCancelled(f"job {job.id} was cancelled or taken over")
        except JobCancelled as exc:
            ended = self._show(job.id)
            self._emit("end", ended, {"cancelled": str(exc)})
            return ended
        except Exception as exc:
            # A known error says whether another attempt can help; an unexpected one might.
            retry = exc.retryable if isinstance(exc, PatchregError) else True
            error = _describe(exc)
            with self._transaction() as s:
                jobs.fail(
                    s,
                    job.id,
                    self.config.name,
                    error,
                    retry=retry,
                    backoff_seconds=self.config.backoff_seconds,
                )
        finally:
            beat_stop.set()
            beat.join()
            shutil.rmtree(work_dir, ignore_errors=True)
        ended = self._show(job.id)
        self._emit("end", ended, {})
        return ended

    def run(self, *, once: bool = False, until_idle: bool = False) -> int:
        """Work until stopped (or after one job with `once`, or when no job is left with
        `until_idle`); returns how many jobs this worker ran."""
        ran = 0
        while not self.stop_requested.is_set():
            job = self.run_one()
            if job is not None:
                ran += 1
                if once:
                    break
                continue
            if once or (until_idle and not self._work_pending()):
                break
            self.stop_requested.wait(self.config.poll_seconds)
        return ran

    def _work_pending(self) -> bool:
        """Whether a job of our kinds could still become claimable soon (queued with a backoff, or
        running elsewhere under a lease that may expire): `--until-idle` waits for those."""
        kinds = self.config.kinds or tuple(self.handlers)
        with self._transaction() as s:
            return any(
                jobs.list_jobs(s, status=st, kind=kind, limit=1)
                for st in ("queued", "running")
                for kind in kinds
            )

    def _heartbeat(self, ctx: JobContext, stop: threading.Event) -> None:
        while not stop.wait(self.config.heartbeat_seconds):
            snap = ctx.state.snapshot()
            progress, message = snap if snap is not None else (None, None)
            try:
                with self._transaction() as s:
                    held = jobs.heartbeat(
                        s,
                        ctx.job.id,
                        self.config.name,
                        lease_seconds=self.config.lease_seconds,
                        progress=progress,
                        message=message,
                    )
            except Exception:  # the database is briefly away: keep working, try again next beat
                continue
            if not held:
                ctx.state.stopped = f"job {ctx.job.id} was cancelled or taken over by another worker"
                return

    def _fresh_work_dir(self, job: JobRead) -> Path:
        """A scratch directory for this attempt; earlier attempts' leftovers (a killed worker's)
        are ours to remove now that we hold the job."""
        root = self.config.work_root
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f"{job.id}.*"):
            shutil.rmtree(stale, ignore_errors=True)
        path = root / f"{job.id}.{job.attempts}"
        path.mkdir()
        return path

    def _show(self, job_id: str) -> JobRead:
        with self._transaction() as s:
            return jobs.show_job(s, job_id)

    def _emit(self, kind: str, job: JobRead, info: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(kind, job, info)


def _describe(exc: BaseException) -> str:
    """What the job row keeps. Its first line is the one-line message every reader sees: a known
    error's `code: message`, or for an unexpected one only its type (its text may carry server
    paths). The lines after it, the exception and the traceback's tail, are shown to admins."""
    if isinstance(exc, PatchregError):
        return f"{exc.code}: {' '.join(exc.message.split())}"
    tail = "".join(traceback.format_exception(exc)[-6:])
    summary = f"internal_error: unexpected {type(exc).__name__} in the worker (admins see the traceback)"
    return f"{summary}\n{type(exc).__name__}: {exc}\n{tail}"[:4000]
