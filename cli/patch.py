"""`patchreg patch`: patch files (inspect) and registered patches (import, list, show)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.context import AppContext, json_flag, pass_app
from cli.listing import page_options, rows_of
from cli.output import emit, print_fields, print_table
from cli.patchfile import inspect_command
from core.vocab import PATCH_STATUSES

LIST_COLUMNS = [
    ("PATCH", "id"),
    ("DOMAIN", "domain"),
    ("BASE", "base"),
    ("METHOD", "method"),
    ("ORIGIN", "origin"),
    ("PARENT", "parent_id"),
    ("STATUS", "status"),
    ("PARAMS", "trainable_params"),
    ("CREATED", "created_at"),
]


@click.group()
def patch() -> None:
    """Import, list and inspect patches."""


patch.add_command(inspect_command)


@patch.command("import")
@click.argument("domain")
@click.option(
    "--base", "base_ref", metavar="FAMILY:VERSION", required=True, help="The base the patch was made on."
)
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@json_flag
@pass_app
def import_(app: AppContext, domain: str, base_ref: str, source: Path) -> None:
    """Register an existing patch: a PEFT LoRA or IA3 adapter directory, or a patchreg patch file."""
    row = app.backend.upload_patch(source, domain, base_ref)
    emit(
        app.json_output,
        row,
        lambda: click.echo(
            f"imported {row.id} ({row.method}, {row.trainable_params:,} params) for {domain} on {base_ref}"
        ),
    )


@patch.command("list")
@click.option("--domain", metavar="D", help="Only this domain.")
@click.option("--base", "base_ref", metavar="FAMILY:VERSION", help="Only patches on this base version.")
@click.option("--status", type=click.Choice(PATCH_STATUSES), help="Only patches with this status.")
@page_options(100, "oldest first")
@json_flag
@pass_app
def list_(
    app: AppContext, domain: str | None, base_ref: str | None, status: str | None, limit: int, show_all: bool
) -> None:
    """List patches, oldest first: the first --limit of them, or --all."""
    rows, note = rows_of(app, "patches", limit, show_all, domain=domain, base=base_ref, status=status)
    emit(app.json_output, rows, lambda: print_table(rows, LIST_COLUMNS, empty="no patches"))
    note()


@patch.command("show")
@click.argument("patch_id", metavar="PATCH")
@json_flag
@pass_app
def show(app: AppContext, patch_id: str) -> None:
    """Show one patch (by id or unique prefix)."""
    row = app.backend.show_patch(patch_id)
    emit(
        app.json_output,
        row,
        lambda: print_fields(
            [
                ("patch", row.id),
                ("domain", row.domain),
                ("base", row.base),
                ("method", row.method),
                ("config", ", ".join(f"{k}={v}" for k, v in sorted(row.method_config.items())) or "-"),
                ("origin", row.origin),
                ("parent", row.parent_id),
                ("status", row.status),
                ("parameters", row.trainable_params),
                ("sha256", row.digest),
                ("size", row.size),
                (
                    "train data",
                    f"{row.train_dataset} ({row.train_dataset_digest[:12]})"
                    if row.train_dataset_digest
                    else None,
                ),
                ("job", row.job_id),
                ("created", row.created_at),
            ]
        ),
    )
