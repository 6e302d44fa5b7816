"""`patchreg alias`: named pointers such as `production` that `fetch` honours first."""

from __future__ import annotations

import click

from cli.context import AppContext, json_flag, pass_app
from cli.listing import page_options, rows_of
from cli.output import emit, print_table


@click.group()
def alias() -> None:
    """Point a name (e.g. production) at a patch for a domain on a base version."""


@alias.command("set")
@click.argument("domain")
@click.option("--base", "base_ref", metavar="FAMILY:VERSION", required=True)
@click.argument("name")
@click.argument("patch_id", metavar="PATCH")
@json_flag
@pass_app
def set_(app: AppContext, domain: str, base_ref: str, name: str, patch_id: str) -> None:
    """Point NAME at PATCH for DOMAIN on --base."""
    row = app.backend.set_alias(domain, base_ref, name, patch_id)
    emit(app.json_output, row, lambda: click.echo(f"{domain} on {base_ref}: {name} -> {row.patch_id}"))


@alias.command("list")
@click.option("--domain", metavar="D", help="Only this domain.")
@page_options(100, "by domain and name")
@json_flag
@pass_app
def list_(app: AppContext, domain: str | None, limit: int, show_all: bool) -> None:
    """List aliases."""
    rows, note = rows_of(app, "aliases", limit, show_all, domain=domain)
    columns = [
        ("DOMAIN", "domain"),
        ("BASE", "base"),
        ("ALIAS", "name"),
        ("PATCH", "patch_id"),
        ("UPDATED", "updated_at"),
    ]
    emit(app.json_output, rows, lambda: print_table(rows, columns, empty="no aliases"))
    note()
