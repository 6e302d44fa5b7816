"""`patchreg token`: API tokens for the HTTP server (`patchreg serve`)."""

from __future__ import annotations

import click

from cli.context import AppContext, json_flag, pass_app
from cli.listing import page_options, rows_of
from cli.output import emit, print_table


@click.group()
def token() -> None:
    """Create, list and revoke API tokens (scopes: read, write, admin)."""


@token.command("create")
@click.argument("name")
@click.option(
    "--scopes",
    default="read",
    show_default=True,
    metavar="LIST",
    help="Comma-separated: read, write (implies read), admin (implies both; manages tokens).",
)
@json_flag
@pass_app
def create(app: AppContext, name: str, scopes: str) -> None:
    """Create a token NAME and print its secret: it is shown this once and never stored."""
    row, secret = app.backend.create_token(name, scopes.split(","))
    emit(
        app.json_output,
        {"token": row, "secret": secret},
        lambda: click.echo(
            f"created token {row.name} ({', '.join(row.scopes)}); its secret, shown only now:\n{secret}"
        ),
    )


@token.command("list")
@page_options(100, "by name")
@json_flag
@pass_app
def list_(app: AppContext, limit: int, show_all: bool) -> None:
    """List tokens (names and scopes; secrets are never stored)."""
    rows, note = rows_of(app, "tokens", limit, show_all)
    table = [{**r.model_dump(), "scopes": ",".join(r.scopes)} for r in rows]
    columns = [("TOKEN", "name"), ("SCOPES", "scopes"), ("CREATED", "created_at"), ("REVOKED", "revoked_at")]
    emit(app.json_output, rows, lambda: print_table(table, columns, empty="no tokens"))
    note()


@token.command("revoke")
@click.argument("name")
@json_flag
@pass_app
def revoke(app: AppContext, name: str) -> None:
    """Revoke token NAME at once; the name stays taken so the audit log keeps its meaning."""
    row = app.backend.revoke_token(name)
    emit(app.json_output, row, lambda: click.echo(f"revoked token {row.name}"))
