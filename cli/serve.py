"""`patchreg serve`: the HTTP API under uvicorn, on this registry (--home / --db)."""

from __future__ import annotations

import os

import click

from cli.context import AppContext, pass_app

APP_FACTORY = "registry.api.app:create_app"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@pass_app
def serve(app: AppContext, host: str, port: int) -> None:
    """Serve the web interface (/) and the HTTP API (/v1, docs at /docs, health at /healthz)
    until interrupted.

    Refuses to start on an out-of-date schema. Tokens come from `patchreg token create`; set
    PATCHREG_API_OPEN_READS=1 to let reads through without one.
    """
    app.ensure_schema()
    import uvicorn

    # The factory reads PATCHREG_*; hand it the registry chosen by --home / --db.
    os.environ["PATCHREG_HOME"] = str(app.settings.home)
    if app.settings.database_url:
        os.environ["PATCHREG_DATABASE_URL"] = app.settings.database_url
    uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, log_level="info")
