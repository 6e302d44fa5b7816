"""`materialize`: a `FetchPlan` and its verified patch file as one output directory, in any format.

native is a copy of the patch file; peft is the PEFT adapter (`write_peft`), or with a serving
`target` the LoRA form that engine loads exactly (`write_engine_adapter`; scale deltas and
approximations read the base's files); merged is base + patch as a standalone model
(`write_merged`, needs the base's files). Every format gets the plan's manifest (`patchreg.json`)
beside it, peft and merged a model card (`README.md`, `core.model_card`), and the whole directory
appears at once (`core.atomic.atomic_output_dir`) or not at all.

This module imports no torch: the native path runs on a server without it, and peft/merged load
their writers (and torch) only when asked, answering `Unsupported` where torch is missing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.atomic import atomic_output_dir
from core.errors import InvalidInput, Unsupported
from core.fetch import MANIFEST, NATIVE_FILE, FetchPlan, check_format
from core.model_card import CARD
from core.model_card import render as render_card
from core.serving import check_target

Writer = Callable[[FetchPlan, Path, Path, Path | None], None]


@dataclass(frozen=True)
class Export:
    """How a peft-format fetch is shaped: for which engine, and the SVD rank when approximating
    (with the texts the approximation's logit error is measured on)."""

    target: str = "peft"
    approximate: int | None = None
    texts: tuple[str, ...] = ()


def _write_native(plan: FetchPlan, patch_file: Path, directory: Path, base_dir: Path | None) -> None:
    shutil.copyfile(patch_file, directory / NATIVE_FILE)


def writer(fmt: str, export: Export | None = None, report: dict[str, Any] | None = None) -> Writer:
    """The writer for `fmt`, its ML imports done now: `Unsupported` before anything is written or
    looked up when this installation has no torch (native never needs it). An engine export
    records what it decided in `report`."""
    export = export or Export()
    if check_format(fmt) == "native":
        return _write_native
    try:
        from trainer.patch.io import load_patch
        from trainer.patch.merge import write_merged
        from trainer.patch.peft_export import write_peft
    except ImportError as exc:
        raise Unsupported(
            f"this installation cannot write the {fmt} format ({exc}); install torch, or fetch native"
        ) from None

    def peft(plan: FetchPlan, patch_file: Path, directory: Path, base_dir: Path | None) -> None:
        patch = load_patch(patch_file)
        if export.target == "peft":
            write_peft(patch, directory, plan.base_name, plan.revision, module_shapes=plan.module_shapes)
            return
        from trainer.patch.engine_export import write_engine_for_base

        decided = write_engine_for_base(
            patch, directory, export.target, plan.serving_facts(), plan.base_name, plan.revision,
            base_dir=base_dir, approximate=export.approximate, texts=list(export.texts),
        )  # fmt: skip
        if report is not None:
            report.update(decided)

    def merged(plan: FetchPlan, patch_file: Path, directory: Path, base_dir: Path | None) -> None:
        assert base_dir is not None
        write_merged(base_dir, load_patch(patch_file), directory)

    return peft if fmt == "peft" else merged


def materialize(
    plan: FetchPlan,
    fmt: str,
    patch_file: Path | str,
    out_dir: Path | str,
    base_dir: Path | str | None = None,
    export: Export | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Write the plan's patch in `fmt`, plus its manifest, into the new directory `out_dir`.

    `patch_file` must already be verified against `plan.digest` (the store's `local_path` does
    that); `base_dir` holds the base's files: merged needs them, and so does an engine export of
    scale deltas or an approximation. An existing non-empty `out_dir` is refused before anything
    is read. Returns the names of the files written, and what an engine export decided.
    """
    check_format(fmt)
    export = export or Export()
    check_target(export.target)
    if export.target != "peft" and fmt != "peft":
        raise InvalidInput(
            f"--target {export.target} shapes a PEFT adapter; it does not apply to --format {fmt}"
        )
    out_dir = Path(out_dir)
    if fmt == "merged" and base_dir is None:
        raise InvalidInput("a merged fetch needs the base model's files (base_dir)")
    report: dict[str, Any] = {}
    write = writer(fmt, export, report)
    with atomic_output_dir(out_dir) as stage:
        write(plan, Path(patch_file), stage, None if base_dir is None else Path(base_dir))
        manifest = plan.manifest(fmt, export.target) | ({"export": report} if report else {})
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if fmt != "native":
            (stage / CARD).write_text(render_card(plan, fmt, export.target, report or None))
    return sorted(p.name for p in out_dir.iterdir()), report
