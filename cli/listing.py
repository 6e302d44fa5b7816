"""What every list command shares: one page by default (`--limit`, the first N in the list's order),
`--all` to walk every page, and a note on stderr when more rows match (so `--json` stays a list)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from cli.backend import listing
from cli.context import AppContext

F = TypeVar("F", bound=Callable[..., Any])


def page_options(default: int, order: str) -> Callable[[F], F]:
    """`--limit N` (the first N, `order` says which come first) and `--all`."""

    def wrap(command: F) -> F:
        command = click.option(
            "--all", "show_all", is_flag=True, help="Show every match (fetched page by page)."
        )(command)
        return click.option(
            "--limit",
            type=click.IntRange(min=1),
            default=default,
            show_default=True,
            help=f"Show the first N ({order}).",
        )(command)

    return wrap


PLURALS = {"audit": "audit entries"}  # listings whose name is not the plural of what they list


def rows_of(
    app: AppContext, name: str, limit: int, show_all: bool, **filters: Any
) -> tuple[list[Any], Callable[[], None]]:
    """The rows to show, and what to call after showing them: it says so when more match."""
    rows, more = listing(app.backend, name, None if show_all else limit, **filters)

    def note() -> None:
        if more:
            noun = PLURALS.get(name, name)
            click.echo(f"showing the first {limit} {noun}; more match: --limit N or --all", err=True)

    return rows, note
