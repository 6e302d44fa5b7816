"""`patchreg compat`: does a patch fit a base version, and why (not)."""

from __future__ import annotations

import click

from cli.context import AppContext, json_flag, pass_app
from cli.output import emit, print_fields, print_table
from registry.services import compat as compat_service


@click.command()
@click.argument("patch_id", metavar="PATCH")
@click.option(
    "--base", "base_ref", metavar="FAMILY:VERSION", required=True, help="The base version to check against."
)
@json_flag
@pass_app
def compat(app: AppContext, patch_id: str, base_ref: str) -> None:
    """Check PATCH against a base version: verdict, reasons, and the LoRA rank a server needs."""
    with app.transaction() as session:
        row = compat_service.check_compat(session, app.store, patch_id, base_ref)

    def human() -> None:
        colour = "green" if row.verdict == "compatible" else "red"
        print_fields(
            [
                ("patch", f"{row.patch_id} (made on {row.source_base})"),
                ("base", row.base),
                ("verdict", click.style(row.verdict, fg=colour, bold=True)),
                ("PEFT rank", row.export_rank if row.export_rank is not None else "- (no LoRA form)"),
            ]
        )
        if row.reasons:
            click.echo()
            print_table(row.reasons, [("CODE", "code"), ("MODULE", "module"), ("WHY", "message")])

    emit(app.json_output, row, human)
