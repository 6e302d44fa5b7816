"""`patchreg audit`: the append-only log of every write."""

from __future__ import annotations

import click

from cli.context import AppContext, json_flag, pass_app
from cli.listing import page_options, rows_of
from cli.output import emit, print_table


def _detail(detail: dict[str, object]) -> str:
    """key=value pairs for people, with digests shortened to 12 hex (as `git log` does)."""
    parts = []
    for key, value in detail.items():
        if value is None:
            continue
        text = str(value)
        parts.append(f"{key}={text[:12] if len(text) == 64 and text.isalnum() else text}")
    return ", ".join(parts)


@click.command()
@click.option("--subject", help="Only events about this subject (e.g. tiny:v1).")
@page_options(50, "newest first")
@json_flag
@pass_app
def audit(app: AppContext, subject: str | None, limit: int, show_all: bool) -> None:
    """Show who did what, newest first."""
    rows, note = rows_of(app, "audit", limit, show_all, subject=subject)
    table = [{**r.model_dump(), "detail": _detail(r.detail)} for r in rows]
    columns = [
        ("AT", "at"),
        ("ACTOR", "actor"),
        ("ACTION", "action"),
        ("SUBJECT", "subject"),
        ("DETAIL", "detail"),
    ]
    emit(app.json_output, rows, lambda: print_table(table, columns, empty="no events"))
    note()
