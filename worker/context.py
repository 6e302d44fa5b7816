"""What a job handler gets: the job, the registry, a scratch directory, and a progress channel.

Progress goes into shared memory; the runner's heartbeat thread writes it to the job row with each
lease renewal, so handlers never open a transaction just to report a step. When a renewal finds the
job cancelled (or taken over after a lost lease), the next `progress()` call raises `JobCancelled`
and the handler unwinds without recording anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from registry.db import transaction
from registry.schemas import JobRead
from registry.services import jobs
from registry.store import ArtifactStore

if TYPE_CHECKING:
    from trainer.resident import ResidentModels


class JobCancelled(Exception):
    """The job was cancelled or another worker holds it now: stop, record nothing."""


@dataclass
class ProgressState:
    """Shared between the handler (writer) and the heartbeat thread (reader)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    progress: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    dirty: bool = False
    stopped: str | None = None  # why the job must stop, set by the heartbeat

    def snapshot(self) -> tuple[dict[str, Any], str] | None:
        with self.lock:
            if not self.dirty:
                return None
            self.dirty = False
            return dict(self.progress), self.message


@dataclass
class JobContext:
    job: JobRead
    worker: str
    factory: sessionmaker[Session]
    store: ArtifactStore
    device: str
    work_dir: Path
    state: ProgressState = field(default_factory=ProgressState)
    models: ResidentModels | None = None  # the worker's resident bases (trainer.resident)
    completed: bool = False
    on_progress: Callable[[JobRead, dict[str, Any], str], None] | None = None

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    @property
    def actor(self) -> str:
        """Who the audit log names for this worker's writes."""
        return f"worker:{self.worker}"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A unit of work acted by this worker (audit actor `worker:NAME`)."""
        with transaction(self.factory, self.actor) as session:
            yield session

    def progress(
        self, done: float, total: float | None = None, message: str | None = None, **extra: Any
    ) -> None:
        """Report how far the job is; raises JobCancelled once the job must stop."""
        with self.state.lock:
            self.state.progress = {"done": done, "total": total, **extra}
            if message is not None:
                self.state.message = message
            self.state.dirty = True
        if self.on_progress is not None:
            self.on_progress(self.job, self.state.progress, self.state.message)
        self.check_cancelled()

    def check_cancelled(self) -> None:
        if self.state.stopped is not None:
            raise JobCancelled(self.state.stopped)

    def complete_in(self, session: Session, result: dict[str, Any]) -> None:
        """Mark the job succeeded inside the handler's own transaction, so what the job made and
        its success commit together (a crash between the two would otherwise redo the work)."""
        if not jobs.complete(session, self.job.id, self.worker, result):
            raise JobCancelled(f"job {self.job.id} was cancelled or taken over before it could finish")
        self.completed = True
