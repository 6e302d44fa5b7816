"""`evaluate`: measure a patch on its domain's eval datasets, next to its base alone, and gate it.

A trained or retrained candidate becomes `validated` when it changes the model's outputs and beats
the base alone on average (accuracy when the data has choices, else loss); otherwise `degraded`.
A ported patch is re-checked by the port path instead, which also compares with its source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.services import evaluations, patches
from registry.services.datasets import is_available, readable_path
from registry.services.lookup import base_ref, get_patch
from registry.sources import resolve_source
from worker.context import JobContext
from worker.port import GateConfig, port_and_check, primary, summary


def run(ctx: JobContext) -> dict[str, Any]:
    patch_id = ctx.payload["patch_id"]
    with ctx.transaction() as s:
        patch = get_patch(s, patch_id)
        if patch.origin == "ported":
            source_id, base = patch.parent_id, base_ref(patch.base_version)
        else:
            source_id = None
            base = base_ref(patch.base_version)
            model_dir = resolve_source(patch.base_version.source_uri).path
            patch_path = ctx.store.local_path(patch.artifact_digest)
            sets = [
                (ds.id, f"{ds.domain.name}/{ds.name}", readable_path(s, ctx.store, ds))
                for ds in evaluations.eval_datasets(s, patch.domain.name)
                if is_available(ds)
            ]
            stored = {ds_id: evaluations.latest(s, None, base, ds_id) for ds_id, _, _ in sets}
    if source_id is not None:
        ctx.progress(0, 1, f"re-checking ported patch {patch_id} on {base}")
        report = port_and_check(
            ctx.factory,
            ctx.store,
            source_id,
            base,
            job_id=ctx.job.id,
            actor=f"worker:{ctx.worker}",
            device=ctx.device,
        )
        return {"patch_id": patch_id, "status": report.status, "why": report.why}
    if not sets:
        return {"patch_id": patch_id, "status": None, "why": "the domain has no readable eval dataset"}

    gate = GateConfig()
    noop, rows = _measure(ctx, model_dir, patch_path, sets, stored)
    gain = sum(primary(r["patch"]) - primary(r["base"]) for r in rows) / len(rows)
    status, why = decide(gain, noop.no_op_reason(gate.noop_tolerance), gate)
    with ctx.transaction() as s:
        for (ds_id, _, _), row in zip(sets, rows, strict=True):
            if stored[ds_id] is None:
                evaluations.record(s, None, base, ds_id, row["base"], ctx.job.id)
            evaluations.record(s, patch_id, base, ds_id, row["patch"], ctx.job.id)
        current = get_patch(s, patch_id)
        current.metrics = {**current.metrics, **summary(rows, "patch"), "gain": gain, "gate": why}
        if current.status == "candidate":
            patches.set_status(s, patch_id, status, why)
        result = {"patch_id": patch_id, "status": status, "why": why, "rows": rows}
        ctx.complete_in(s, result)
    return result


def decide(gain: float, noop_reason: str | None, gate: GateConfig) -> tuple[str, str]:
    if noop_reason:
        return "degraded", f"no-op ({noop_reason}): a patch that changes nothing is never validated"
    if gain <= gate.margin:
        return "degraded", f"does not beat the base alone (gain {gain:+.4f}, margin {gate.margin:g})"
    return "validated", f"beats the base alone by {gain:+.4f}"


def _measure(
    ctx: JobContext,
    model_dir: Path,
    patch_path: Path,
    sets: list[tuple[int, str, Path]],
    stored: dict[int, Any],
) -> tuple[Any, list[dict[str, Any]]]:
    from core.rows import read_rows
    from trainer.evaluate import evaluate
    from trainer.hf import load_causal_lm, load_tokenizer, resolve_device
    from trainer.patch.apply import apply_patch
    from trainer.patch.io import load_patch
    from trainer.port.noop import patch_effect

    model = load_causal_lm(model_dir, dtype="auto").to(resolve_device(ctx.device))
    tokenizer = load_tokenizer(model_dir)
    patch_file = load_patch(patch_path)
    noop = patch_effect(model, tokenizer, patch_file)
    out = []
    for i, (ds_id, name, path) in enumerate(sets):
        ctx.progress(i, len(sets), f"evaluating on {name}")
        data = read_rows(path)
        base_metrics = stored[ds_id] or evaluate(model, tokenizer, data).to_dict()
        with apply_patch(model, patch_file):
            patched = evaluate(model, tokenizer, data).to_dict()
        out.append({"dataset": name, "base": base_metrics, "patch": patched})
    ctx.progress(len(sets), len(sets), "evaluated")
    return noop, out
