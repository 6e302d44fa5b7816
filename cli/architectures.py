"""`patchreg architectures`: the architectures patchreg knows, from the catalog in core/arch."""

from __future__ import annotations

import click

from cli.context import AppContext, json_flag, pass_app
from cli.output import emit, print_table
from core.arch.catalog import ARCHITECTURES
from core.arch.table import describe, markdown


@click.command("architectures")
@click.option("--markdown", "as_markdown", is_flag=True, help="Print the README table.")
@json_flag
@pass_app
def architectures(app: AppContext, as_markdown: bool) -> None:
    """List supported architectures: model types, weights per layer, S²FT units.

    Every method (lora, full, propulsion, s2ft) trains on each of them with no --set needed; the
    weights listed are the default targets. Another model_type needs --set target_modules."""
    rows = [describe(a) for a in ARCHITECTURES]
    if as_markdown:
        click.echo(markdown(), nl=False)
        return
    table = [{**r, "types": ",".join(r["model_types"]), "weights": ", ".join(r["weights"])} for r in rows]
    emit(
        app.json_output,
        rows,
        lambda: print_table(
            table, [("ARCHITECTURE", "name"), ("MODEL TYPES", "types"), ("WEIGHTS", "weights")]
        ),
    )
