"""`patchreg login` / `logout`: remember a server and its token for later commands.

The token is checked against the server (`GET /v1/whoami`) before it is stored, so a typo fails
here and not on the next command; the file (`cli.credentials.credentials_file`) is readable by this
user only.
"""

from __future__ import annotations

import click

from cli.context import AppContext, json_flag, pass_app
from cli.credentials import Remote, credentials_file, store
from cli.output import emit
from client import Client


@click.command()
@click.argument("url")
@click.option("--token", "token_opt", metavar="T", help="The API token (asked for, hidden, when omitted).")
@json_flag
@pass_app
@click.pass_context
def login(ctx: click.Context, app: AppContext, url: str, token_opt: str | None) -> None:
    """Check an API token against the server at URL and store both for later commands."""
    parent = ctx.parent.params if ctx.parent is not None else {}
    token = token_opt or parent.get("token") or click.prompt("token", hide_input=True, err=True)
    url = url.rstrip("/")
    with Client(url, token) as client:
        who = client.whoami()
    path = store(Remote(url, token))
    emit(
        app.json_output,
        {"url": url, "token": who.token, "scopes": who.scopes, "credentials": str(path)},
        lambda: click.echo(
            f"logged in to {url} as token {who.token} ({', '.join(who.scopes)}); saved to {path}"
        ),
    )


@click.command()
@pass_app
def logout(app: AppContext) -> None:
    """Forget the stored server and token."""
    path = credentials_file()
    if path.exists():
        path.unlink()
        click.echo(f"logged out: removed {path}")
    else:
        click.echo("not logged in")
