"""`patchreg dataset`: validated JSONL datasets per domain."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import click

from cli.context import AppContext, json_flag, pass_app
from cli.listing import page_options, rows_of
from cli.output import emit, print_table
from core.rows import ROLES


def _parse_date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD") from None


@click.group()
def dataset() -> None:
    """Add and list datasets (train, eval, general)."""


@dataset.command("add")
@click.argument("domain")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the data is for.")
@click.option(
    "--available-until",
    metavar="DATE",
    callback=_parse_date,
    help="YYYY-MM-DD from which the data may no longer be read (e.g. a data-use agreement's end).",
)
@json_flag
@pass_app
def add(app: AppContext, domain: str, name: str, file: Path, role: str, available_until: date | None) -> None:
    """Validate a JSONL file row by row and store it as a dataset of DOMAIN.

    Rows: {"text": ...} or {"prompt": ..., "completion": ...}; eval rows may add
    "choices": [...] and "answer" (index or text).
    """
    row = app.backend.upload_dataset(domain, name, file, role, available_until)
    emit(
        app.json_output,
        row,
        lambda: click.echo(
            f"added {role} dataset {domain}/{name}: {row.rows:,} rows, sha256 {row.digest[:12]}"
        ),
    )


@dataset.command("list")
@click.option("--domain", metavar="D", help="Only this domain.")
@page_options(100, "by domain and name")
@json_flag
@pass_app
def list_(app: AppContext, domain: str | None, limit: int, show_all: bool) -> None:
    """List datasets."""
    rows, note = rows_of(app, "datasets", limit, show_all, domain=domain)
    table = [{**r.model_dump(), "digest": r.digest[:12]} for r in rows]
    columns = [
        ("DOMAIN", "domain"),
        ("DATASET", "name"),
        ("ROLE", "role"),
        ("ROWS", "rows"),
        ("SHA256", "digest"),
        ("AVAILABLE UNTIL", "available_until"),
        ("READABLE", "available"),
    ]
    emit(app.json_output, rows, lambda: print_table(table, columns, empty="no datasets"))
    note()
