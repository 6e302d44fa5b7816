"""`patchreg domain`: the subject areas patches are trained for."""

from __future__ import annotations

import click

from cli.context import AppContext, json_flag, pass_app
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
@json_flag
@pass_app
def list_(app: AppContext) -> None:
    """List domains."""
    rows = app.backend.list_domains()
    emit(
        app.json_output,
        rows,
        lambda: print_table(
            rows,
            [("DOMAIN", "name"), ("DESCRIPTION", "description"), ("CREATED", "created_at")],
            empty="no domains",
        ),
    )
