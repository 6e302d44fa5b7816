"""What every command shares: settings, the backend, the database, the store, the transaction, output mode.

Against a server (`app.remote` set), data commands go through `app.backend`; the database, the
store and `transaction()` refuse in one line, so a command not yet ported to the backend says it
cannot run remotely instead of quietly using this machine's registry.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.errors import SchemaOutOfDate
from registry.config import Settings
from registry.db import make_engine, session_factory, transaction
from registry.store import ArtifactStore, open_store

if TYPE_CHECKING:
    from cli.backend import Backend
    from cli.credentials import Remote


@dataclass
class AppContext:
    settings: Settings
    json_output: bool = False
    global_args: list[str] = field(default_factory=list)  # --home/--db as typed, for fix commands
    remote: Remote | None = None  # the server this invocation talks to (`cli.credentials.choose`)

    @cached_property
    def backend(self) -> Backend:
        if self.remote is None:
            from cli.backend import LocalBackend

            return LocalBackend(self)
        from cli.remote import RemoteBackend

        backend = RemoteBackend(self.remote)
        click.get_current_context().call_on_close(backend.close)
        return backend

    def _local_only(self) -> None:
        if self.remote is not None:
            from cli.errors import not_remote

            raise not_remote(self.remote.url)

    @cached_property
    def engine(self) -> Engine:
        self._local_only()
        url = self.settings.resolved_database_url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return make_engine(url)

    @cached_property
    def factory(self) -> sessionmaker[Session]:
        self._local_only()
        return session_factory(self.engine)

    @cached_property
    def store(self) -> ArtifactStore:
        self._local_only()
        return open_store(self.settings.artifact_root, self.settings.store_url)

    def command_line(self, *args: str) -> str:
        return shlex.join(["patchreg", *self.global_args, *args])

    def sqlite_file_missing(self) -> Path | None:
        """The SQLite file that does not exist yet (reads must not create it), else None."""
        url = self.settings.resolved_database_url
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            return None if path.exists() else path
        return None

    def ensure_schema(self) -> None:
        from registry.migrate import ensure_current

        self._local_only()
        fix = self.command_line("db", "upgrade")
        missing = self.sqlite_file_missing()
        if missing is not None:
            raise SchemaOutOfDate(f"no registry database at {missing}; run `{fix}`")
        ensure_current(self.engine, fix_command=fix)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One command, one unit of work, on the current schema only."""
        self._local_only()
        self.ensure_schema()
        with transaction(self.factory, self.settings.resolved_actor) as session:
            yield session


pass_app = click.make_pass_decorator(AppContext)


def json_flag(func: Any) -> Any:
    """`--json` on a subcommand too, so `patchreg base show X --json` works like `patchreg --json …`."""

    def _set(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(AppContext).json_output = True

    return click.option(
        "--json", "json_", is_flag=True, expose_value=False, callback=_set, help="Print JSON for scripts."
    )(func)
