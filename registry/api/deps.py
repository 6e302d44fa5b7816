"""What a request works with: the server's shared state, who is calling, and one transaction.

Routes never commit: `RequestContext.transaction()` is the request's single unit of work (it
also drops blobs stored by a request that failed), and it names the caller as the audit actor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import DatabaseUnavailable, SchemaOutOfDate
from registry.api.redact import Redactor
from registry.config import Settings
from registry.db import make_engine, session_factory, transaction
from registry.migrate import ensure_current, head_revision
from registry.services import tokens
from registry.store import ArtifactStore, open_store

FIX_COMMAND = "patchreg db upgrade"
log = logging.getLogger("patchreg.api")


@dataclass
class SchemaGuard:
    """Answers whether the database is reachable and at the head schema.

    A positive answer is trusted for `ttl` seconds so requests do not each pay for the check; a
    negative one never is, so a server started on an old schema recovers as soon as someone runs
    `patchreg db upgrade`.
    """

    engine: Engine
    sqlite_file: Path | None
    ttl: float = 5.0
    head: str = field(default_factory=head_revision)
    _current_until: float = field(default=0.0, init=False)

    def check(self, fresh: bool = False) -> str:
        """The schema revision, or SchemaOutOfDate / DatabaseUnavailable."""
        if not fresh and time.monotonic() < self._current_until:
            return self.head
        if self.sqlite_file is not None and not self.sqlite_file.exists():
            raise SchemaOutOfDate(f"no registry database at {self.sqlite_file}; run `{FIX_COMMAND}`")
        try:
            ensure_current(self.engine, fix_command=FIX_COMMAND)
        except DBAPIError as exc:
            log.error("registry database unreachable: %s", exc.orig)  # details stay in the server log
            raise DatabaseUnavailable("the registry database cannot be reached") from None
        self._current_until = time.monotonic() + self.ttl
        return self.head


@dataclass
class ApiState:
    """Created once per app: settings, the engine and session factory, the store, the schema guard."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    store: ArtifactStore
    guard: SchemaGuard
    redactor: Redactor  # takes the server's paths out of error messages

    @classmethod
    def open(cls, settings: Settings) -> ApiState:
        url = settings.resolved_database_url
        sqlite_file = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
        engine = make_engine(url)
        return cls(
            settings,
            engine,
            session_factory(engine),
            open_store(settings.artifact_root, settings.store_url),
            SchemaGuard(engine, sqlite_file),
            Redactor.for_server(settings.home, settings.artifact_root),
        )


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.patchreg
    return state


@dataclass(frozen=True)
class Caller:
    """Who sent the request: a token's name and scopes, or nobody (reads left open by configuration)."""

    token: str | None
    scopes: tuple[str, ...]

    @property
    def actor(self) -> str:
        return f"token:{self.token}" if self.token else "anonymous"

    def grants(self, scope: str) -> bool:
        """Whether this caller's token carries `scope` (or a higher one); no token grants nothing."""
        return self.token is not None and tokens.grants(self.scopes, scope)


@dataclass(frozen=True)
class RequestContext:
    state: ApiState
    caller: Caller

    @property
    def store(self) -> ArtifactStore:
        return self.state.store

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """The request's unit of work. An anonymous caller's work is always rolled back: open
        reads cannot write, even if a read route ever did."""
        with transaction(self.state.factory, self.caller.actor) as session:
            yield session
            if self.caller.token is None:
                session.rollback()
