"""`patchreg db`: schema migrations."""

from __future__ import annotations

import click

from cli.context import AppContext, json_flag, pass_app
from cli.output import emit, print_fields


@click.group()
def db() -> None:
    """Create or upgrade the registry database schema."""


@db.command()
@json_flag
@pass_app
def upgrade(app: AppContext) -> None:
    """Apply every pending migration (creates the database on first use)."""
    from registry import migrate

    before = migrate.current_revision(app.engine)
    migrate.upgrade(app.engine)
    after = migrate.current_revision(app.engine)
    data = {"database": app.engine.url.render_as_string(hide_password=True), "from": before, "to": after}
    emit(
        app.json_output,
        data,
        lambda: click.echo(
            f"database is up to date at revision {after}"
            if before == after
            else f"upgraded {data['database']} from {before or 'empty'} to {after}"
        ),
    )


@db.command()
@json_flag
@pass_app
def current(app: AppContext) -> None:
    """Show the schema revision of the database and the one this patchreg needs."""
    from registry import migrate

    head = migrate.head_revision()
    cur = None if app.sqlite_file_missing() else migrate.current_revision(app.engine)
    data = {
        "database": app.settings.resolved_database_url,
        "current": cur,
        "head": head,
        "up_to_date": cur == head,
    }
    emit(
        app.json_output,
        data,
        lambda: print_fields(
            [("database", data["database"]), ("current", cur), ("head", head), ("up to date", cur == head)]
        ),
    )
