"""`patchreg domain`: the subject areas patches are trained for."""

from __future__ import annotations

import click

from cli.context import AppContext, json_flag, pass_app
from cli.listing import page_options, rows_of
from cli.output import emit, print_table


@click.group()
def domain() -> None:
    """Create and list domains."""


@domain.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the domain covers.")
@json_flag
@pass_app
def create(app: AppContext, name: str, description: str) -> None:
    """Create a domain."""
    row = app.backend.create_domain(name, description)
    emit(app.json_output, row, lambda: click.echo(f"created domain {row.name}"))


@domain.command("list")
@page_options(100, "by name")
@json_flag
@pass_app
def list_(app: AppContext, limit: int, show_all: bool) -> None:
    """List domains."""
    rows, note = rows_of(app, "domains", limit, show_all)
    emit(
        app.json_output,
        rows,
        lambda: print_table(
            rows,
            [("DOMAIN", "name"), ("DESCRIPTION", "description"), ("CREATED", "created_at")],
            empty="no domains",
        ),
    )
    note()
