"""`patchreg fetch`: the patch to run for a domain on a base version, in the form a server loads.

Which patch is chosen is `registry.services.resolve`'s rule (alias, best validated, newest
candidate). The output directory is built beside DIR and renamed into place, so DIR holds either
nothing or a complete fetch; an existing non-empty DIR is refused before anything is read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import click

from cli.context import AppContext, json_flag, pass_app
from cli.output import emit, to_jsonable
from core.errors import AlreadyExists
from registry.schemas import BaseVersionDetail, Resolution
from registry.services import bases, resolve
from registry.sources import HF_PREFIX

FORMATS = ("native", "peft", "merged")
MANIFEST = "patchreg.json"


def peft_base_name(source_uri: str) -> str:
    """What PEFT's `base_model_name_or_path` should say: the hub repo id, else the local path."""
    if source_uri.startswith(HF_PREFIX):
        return source_uri[len(HF_PREFIX) :].partition("@")[0]
    return source_uri


def _refuse_non_empty(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AlreadyExists(f"output directory {out} already exists and is not empty")


def _write_atomically(out: Path, build: Callable[[Path], None]) -> None:
    """`build(stage)` creates `stage`; it becomes `out` only once it is complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.fetch-"))
    try:
        stage = scratch / "out"
        build(stage)
        _refuse_non_empty(out)
        os.replace(stage, out)  # replaces an empty directory, fails on a non-empty one
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _module_shapes(base: BaseVersionDetail) -> dict[str, tuple[int, int]]:
    """Linear weight shapes from the registered tensor table: no base download needed."""
    return {
        name.removesuffix(".weight"): (int(shape[0]), int(shape[1]))
        for name, shape, _ in base.tensor_table
        if name.endswith(".weight") and len(shape) == 2
    }


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
    _refuse_non_empty(out)
    with app.transaction() as session:
        chosen = resolve.resolve_patch(session, domain, base_ref, method)
        base = bases.show_base(session, chosen.patch.base)
    manifest = {
        "patch_id": chosen.patch.id,
        "domain": chosen.patch.domain,
        "base": chosen.patch.base,
        "base_source": base.source_uri,
        "revision": base.revision,
        "method": chosen.patch.method,
        "origin": chosen.patch.origin,
        "status": chosen.patch.status,
        "digest": chosen.patch.digest,
        "format": fmt,
        "why": chosen.why,
    }

    def build(stage: Path) -> None:
        _BUILDERS[fmt](app, chosen, base, stage)
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    _write_atomically(out, build)
    files = sorted(p.name for p in out.iterdir())
    summary = {"patch": chosen.patch, "why": chosen.why, "format": fmt, "out": str(out), "files": files}
    p = chosen.patch
    emit(
        app.json_output,
        to_jsonable(summary),
        lambda: click.echo(
            f"fetched {p.id} ({p.method}, {p.origin}, {p.status}) for {p.domain} on {p.base}: {chosen.why}\n"
            f"wrote {fmt} to {out}"
        ),
    )


def _native(app: AppContext, chosen: Resolution, base: BaseVersionDetail, stage: Path) -> None:
    stage.mkdir()
    app.store.copy_to(chosen.patch.digest, stage / "patch.safetensors")  # hashed while copied


def _peft(app: AppContext, chosen: Resolution, base: BaseVersionDetail, stage: Path) -> None:
    from trainer.patch.io import load_patch
    from trainer.patch.peft_export import export_peft

    patch = load_patch(app.store.local_path(chosen.patch.digest))  # verified against its digest
    export_peft(
        patch,
        stage,
        peft_base_name(base.source_uri),
        base.revision,
        module_shapes=_module_shapes(base),
    )


def _merged(app: AppContext, chosen: Resolution, base: BaseVersionDetail, stage: Path) -> None:
    from registry.sources import resolve_source
    from trainer.patch.apply import merge_into_directory
    from trainer.patch.io import load_patch

    patch = load_patch(app.store.local_path(chosen.patch.digest))
    merge_into_directory(resolve_source(base.source_uri).path, patch, stage)


_BUILDERS: dict[str, Callable[[AppContext, Resolution, BaseVersionDetail, Path], None]] = {
    "native": _native,
    "peft": _peft,
    "merged": _merged,
}
