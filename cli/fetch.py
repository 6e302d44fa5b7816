"""`patchreg fetch`: the patch to run for a domain on a base version, in the form a server loads.

The registry plans (`registry.services.fetch.plan_fetch`: which patch by `resolve`'s rule, and what
an export needs about the base); the trainer's `materialize` writes it. `GET /v1/fetch` does the
same two steps, so both write the same bytes. Against a server, the server writes it (one
materialiser, the same bytes; the client needs no torch and no base files). DIR holds either
nothing or a complete fetch; an existing non-empty DIR is refused before anything is read.
`patchreg resolve` says which patch a fetch would serve, and why, without writing anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.context import AppContext, json_flag, pass_app
from cli.output import emit, export_summary, to_jsonable
from core.atomic import ensure_output_dir_free
from core.fetch import FORMATS
from core.serving import MAX_RANK, TARGETS
from registry.schemas import Resolution


@click.command()
@click.argument("domain")
@click.option("--base", "base_ref", metavar="FAMILY:VERSION", required=True, help="The base you run.")
@click.option("--method", metavar="M", help="Only patches made with this method (e.g. lora, s2ft).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="native (default): the patch file; peft: an adapter directory (default with --target); "
    "merged: base + patch as a model.",
)
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default=None,
    help="The engine the adapter is for: peft (exact PEFT form) or vllm, sglang, lorax, tgi, llama.cpp "
    "(one uniform rank that engine loads exactly).",
)
@click.option(
    "--approximate",
    type=click.IntRange(1, MAX_RANK),
    metavar="RANK",
    default=None,
    help="Export scale/dense deltas as a rank-RANK truncated SVD; the measured error is printed and "
    "kept in patchreg.json.",
)
@click.option("--dry-run", is_flag=True, help="Say which patch and how each engine loads it; write nothing.")
@click.option(
    "-o", "--out", "out", type=click.Path(path_type=Path), help="New directory (not with --dry-run)."
)
@json_flag
@pass_app
def fetch(
    app: AppContext,
    domain: str,
    base_ref: str,
    method: str | None,
    fmt: str | None,
    target: str | None,
    approximate: int | None,
    dry_run: bool,
    out: Path | None,
) -> None:
    """Fetch the patch for DOMAIN on --base: the production alias, else the best validated patch,
    else the newest candidate (degraded patches only when an alias pins them)."""
    fmt = fmt or ("peft" if target else "native")
    if target not in (None, "peft") and fmt != "peft":
        raise click.UsageError(f"--target {target} shapes an adapter: use it with --format peft (or alone)")
    if approximate is not None and target in (None, "peft"):
        raise click.UsageError(
            "--approximate applies to a serving --target (vllm, sglang, lorax, tgi, llama.cpp)"
        )
    if dry_run:
        _dry_run(app, domain, base_ref, method, approximate)
        return
    if out is None:
        raise click.UsageError("Missing option '-o' / '--out'.")
    ensure_output_dir_free(out)
    got = app.backend.fetch(domain, base_ref, out, fmt, target, method, approximate)
    summary = {
        "patch": got.patch,
        "why": got.why,
        "format": fmt,
        "target": (target or "peft") if fmt == "peft" else None,
        "out": str(out),
        "files": got.files,
        **({"export": got.export} if got.export else {}),
    }
    emit(
        app.json_output,
        to_jsonable(summary),
        lambda: _say(got.patch, got.why, fmt, target, out, got.export),
    )


@click.command()
@click.argument("domain")
@click.option("--base", "base_ref", metavar="FAMILY:VERSION", required=True, help="The base you run.")
@click.option("--method", metavar="M", help="Only patches made with this method (e.g. lora, s2ft).")
@json_flag
@pass_app
def resolve(app: AppContext, domain: str, base_ref: str, method: str | None) -> None:
    """Say which patch `fetch` serves for DOMAIN on --base, and why; write nothing."""
    got: Resolution = app.backend.resolve(domain, base_ref, method)
    p = got.patch
    emit(
        app.json_output,
        got,
        lambda: click.echo(
            f"{p.id} ({p.method}, {p.origin}, {p.status}) for {p.domain} on {p.base}: {got.why}"
        ),
    )


def _say(p: Any, why: str, fmt: str, target: str | None, out: Path, decided: dict[str, Any]) -> None:
    click.echo(f"fetched {p.id} ({p.method}, {p.origin}, {p.status}) for {p.domain} on {p.base}: {why}")
    what = fmt if fmt != "peft" or target in (None, "peft") else f"{target} adapter"
    click.echo(f"wrote {what} to {out}")
    if decided:
        click.echo(export_summary(decided))


def _dry_run(
    app: AppContext, domain: str, base_ref: str, method: str | None, approximate: int | None
) -> None:
    from cli.compat import print_serving

    chosen = app.backend.resolve(domain, base_ref, method)  # the patch `fetch` would write
    p, why = chosen.patch, chosen.why
    lines = app.backend.serving(p.id, p.base, approximate)

    def human() -> None:
        click.echo(
            f"would fetch {p.id} ({p.method}, {p.origin}, {p.status}) for {p.domain} on {p.base}: {why}"
        )
        print_serving(lines)

    emit(app.json_output, to_jsonable({"patch": p, "why": why, "serving": lines}), human)
