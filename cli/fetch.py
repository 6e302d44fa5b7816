"""`patchreg fetch`: the patch to run for a domain on a base version, in the form a server loads.

The registry plans (`registry.services.fetch.plan_fetch`: which patch by `resolve`'s rule, and what
an export needs about the base); the trainer's `materialize` writes it. `GET /v1/fetch` does the
same two steps, so both write the same bytes. DIR holds either nothing or a complete fetch; an
existing non-empty DIR is refused before anything is read.
"""

from __future__ import annotations

from pathlib import Path

import click

from cli.context import AppContext, json_flag, pass_app
from cli.output import emit, to_jsonable
from core.atomic import ensure_output_dir_free
from core.fetch import FORMATS
from registry.services import patches
from registry.services.fetch import plan_fetch


@click.command()
@click.argument("domain")
@click.option("--base", "base_ref", metavar="FAMILY:VERSION", required=True, help="The base you run.")
@click.option("--method", metavar="M", help="Only patches made with this method (e.g. lora, s2ft).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="native",
    show_default=True,
    help="native: the patch file; peft: a PEFT adapter directory; merged: base + patch as a model.",
)
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="New directory.")
@json_flag
@pass_app
def fetch(app: AppContext, domain: str, base_ref: str, method: str | None, fmt: str, out: Path) -> None:
    """Fetch the patch for DOMAIN on --base: the production alias, else the best validated patch,
    else the newest candidate (degraded patches only when an alias pins them)."""
    from trainer.patch.materialize import materialize  # torch loads only for peft and merged

    ensure_output_dir_free(out)
    with app.transaction() as session:
        plan = plan_fetch(session, domain, base_ref, method)
        p = patches.show_patch(session, plan.patch_id)
    patch_file = app.store.local_path(plan.digest)  # verified against its sha256
    base_dir = None
    if fmt == "merged":
        from registry.sources import resolve_source

        base_dir = resolve_source(plan.source_uri).path
    files = materialize(plan, fmt, patch_file, out, base_dir)
    summary = {"patch": p, "why": plan.why, "format": fmt, "out": str(out), "files": files}
    emit(
        app.json_output,
        to_jsonable(summary),
        lambda: click.echo(
            f"fetched {p.id} ({p.method}, {p.origin}, {p.status}) for {p.domain} on {p.base}: {plan.why}\n"
            f"wrote {fmt} to {out}"
        ),
    )
