"""Port a patch onto a base version, then measure it and decide its status (the gate).

Three phases, so that no transaction stays open across model work:
1. plan (one transaction): verdict from fingerprints, the ported record (no new bytes), what to
   read: both checkpoints, the patch blob, the domain's readable eval datasets, stored metrics;
2. measure (no database): portability statistics streamed from both checkpoints; on each eval
   dataset the new base alone, the new base + patch, and the source patch on its own base (only
   what is not stored yet); the no-op check on probe prompts;
3. record (one transaction): statistics, new evaluations, status and metrics of the ported patch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from registry.db import transaction
from registry.schemas import PatchRead, VerdictRead
from registry.services import compat, datasets, evaluations, patches, ports
from registry.services.lookup import base_ref, get_patch
from registry.sources import resolve_source
from registry.store import ArtifactStore

ROLES = ("base", "ported", "source_base", "source")  # what each eval row compares


@dataclass(frozen=True)
class GateConfig:
    """`validated` needs a real change of outputs, a gain over the base alone above `margin`, and
    at least `keep_fraction` of the gain the source patch had on its own base."""

    margin: float = 0.0
    keep_fraction: float = 0.8
    noop_tolerance: float = 1e-4


@dataclass
class PortReport:
    verdict: VerdictRead
    patch: PatchRead | None  # None: incompatible, nothing was created
    created: bool
    portability: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)  # per dataset: metrics for each role
    noop: dict[str, Any] | None = None
    status: str | None = None
    why: str = ""


@dataclass
class _Plan:
    source_id: str
    ported_id: str
    source_base: str
    target_base: str
    dir_a: Path
    dir_b: Path
    patch_path: Path
    eval_sets: list[tuple[int, str, Path]]  # (dataset id, "domain/name", verified file)
    owners: dict[str, tuple[str | None, str]]  # role -> (patch id or None for the base alone, base)
    stored: dict[tuple[int, str], dict[str, Any] | None]  # (dataset id, role) -> metrics


def primary(metrics: dict[str, Any]) -> float:
    """The number the gate compares: choice accuracy when the data has choices, else −loss."""
    return float(metrics["accuracy"]) if metrics.get("accuracy") is not None else -float(metrics["loss"])


def decide(rows: list[dict[str, Any]], noop_reason: str | None, gate: GateConfig) -> tuple[str, str]:
    if noop_reason:
        return "degraded", f"no-op ({noop_reason}): a patch that changes nothing is never validated"
    gain = sum(primary(r["ported"]) - primary(r["base"]) for r in rows) / len(rows)
    source_gain = sum(primary(r["source"]) - primary(r["source_base"]) for r in rows) / len(rows)
    if gain <= gate.margin:
        return "degraded", f"does not beat the base alone (gain {gain:+.4f}, margin {gate.margin:g})"
    if source_gain > 0 and gain < gate.keep_fraction * source_gain:
        return (
            "degraded",
            f"keeps {gain / source_gain:.0%} of its source gain, under {gate.keep_fraction:.0%}",
        )
    kept = f", {gain / source_gain:.0%} of its source gain" if source_gain > 0 else ""
    return "validated", f"beats the base alone by {gain:+.4f}{kept}"


def port_and_check(
    factory: sessionmaker[Session],
    store: ArtifactStore,
    patch_id: str,
    base: str,
    *,
    evaluate: bool = True,
    gate: GateConfig | None = None,
    job_id: str | None = None,
    actor: str | None = None,
    device: str = "cpu",
) -> PortReport:
    gate = gate or GateConfig()
    with _unit(factory, actor) as s:
        outcome = ports.port_patch(s, store, patch_id, base, job_id=job_id)
        report = PortReport(outcome.verdict, outcome.patch, outcome.created)
        if outcome.patch is None:
            report.why = "; ".join(r.message for r in outcome.verdict.reasons)
            return report
        plan = _plan(s, store, patch_id, outcome.patch, evaluate)

    from trainer.patch.io import load_patch
    from trainer.port.stats import portability_stats

    patch_file = load_patch(plan.patch_path)
    report.portability = portability_stats(patch_file, plan.dir_a, plan.dir_b).to_dict()
    if plan.eval_sets:
        noop, report.rows = _measure(patch_file, plan, device)
        report.noop = noop.to_dict()
        report.status, report.why = decide(report.rows, noop.no_op_reason(gate.noop_tolerance), gate)
    else:
        report.why = "not evaluated: " + (
            "--no-eval" if not evaluate else "the domain has no readable eval dataset"
        )

    with _unit(factory, actor) as s:
        compat.record_portability(s, plan.source_id, base, report.portability)
        for (ds_id, _, _), row in zip(plan.eval_sets, report.rows, strict=True):
            for role in ROLES:
                if plan.stored[(ds_id, role)] is None:
                    evaluations.record(s, *plan.owners[role], ds_id, row[role], job_id)
        if report.status is not None:
            ported = get_patch(s, plan.ported_id)
            ported.metrics = {**ported.metrics, **summary(report.rows), "gate": report.why}
            report.patch = patches.set_status(s, plan.ported_id, report.status, report.why)
    return report


@contextmanager
def _unit(factory: sessionmaker[Session], actor: str | None) -> Iterator[Session]:
    with transaction(factory) as s:
        if actor is not None:
            s.info["actor"] = actor
        yield s


def _plan(s: Session, store: ArtifactStore, source_id: str, ported: PatchRead, evaluate: bool) -> _Plan:
    source = get_patch(s, source_id)
    target = get_patch(s, ported.id).base_version
    eval_sets = []
    if evaluate:
        for ds in evaluations.eval_datasets(s, ported.domain):
            if datasets.is_available(ds):
                eval_sets.append((ds.id, f"{ds.domain.name}/{ds.name}", datasets.readable_path(s, store, ds)))
    source_base, target_base = base_ref(source.base_version), base_ref(target)
    owners: dict[str, tuple[str | None, str]] = {
        "base": (None, target_base),
        "ported": (ported.id, target_base),
        "source_base": (None, source_base),
        "source": (source.id, source_base),
    }
    stored = {  # the ported patch is always measured afresh: it is what this port is about
        (ds_id, role): None if role == "ported" else evaluations.latest(s, *owners[role], ds_id)
        for ds_id, _, _ in eval_sets
        for role in ROLES
    }
    return _Plan(
        source_id=source.id,
        ported_id=ported.id,
        source_base=source_base,
        target_base=target_base,
        dir_a=resolve_source(source.base_version.source_uri).path,
        dir_b=resolve_source(target.source_uri).path,
        patch_path=store.local_path(source.artifact_digest),
        eval_sets=eval_sets,
        owners=owners,
        stored=stored,
    )


def _measure(patch_file: Any, plan: _Plan, device: str) -> tuple[Any, list[dict[str, Any]]]:
    """(no-op check on the new base, per-dataset metrics for every role), reusing stored numbers."""
    from core.rows import read_rows
    from trainer.evaluate import evaluate
    from trainer.hf import load_causal_lm, load_tokenizer, resolve_device
    from trainer.patch.apply import apply_patch
    from trainer.port.noop import patch_effect

    target = resolve_device(device)
    models: dict[Path, tuple[Any, Any]] = {}

    def model(directory: Path) -> tuple[Any, Any]:
        if directory not in models:
            loaded = load_causal_lm(directory, dtype="auto").to(target)
            models[directory] = (loaded, load_tokenizer(directory))
        return models[directory]

    def run(directory: Path, rows: list[Any], with_patch: bool) -> dict[str, Any]:
        m, tok = model(directory)
        if not with_patch:
            return evaluate(m, tok, rows).to_dict()
        with apply_patch(m, patch_file):
            return evaluate(m, tok, rows).to_dict()

    new_base, tokenizer = model(plan.dir_b)
    noop = patch_effect(new_base, tokenizer, patch_file)
    out = []
    for ds_id, name, path in plan.eval_sets:
        rows = read_rows(path)
        plan_for = {
            "base": (plan.dir_b, False),
            "ported": (plan.dir_b, True),
            "source_base": (plan.dir_a, False),
            "source": (plan.dir_a, True),
        }
        row: dict[str, Any] = {"dataset": name}
        for role, (directory, with_patch) in plan_for.items():
            row[role] = plan.stored[(ds_id, role)] or run(directory, rows, with_patch)
        out.append(row)
    return noop, out


def summary(rows: list[dict[str, Any]], role: str = "ported") -> dict[str, Any]:
    """Mean metrics of `role` over the eval datasets: what `fetch` ranks validated patches by."""
    out: dict[str, Any] = {"loss": sum(r[role]["loss"] for r in rows) / len(rows)}
    accuracies = [r[role]["accuracy"] for r in rows if r[role].get("accuracy") is not None]
    if accuracies:
        out["accuracy"] = sum(accuracies) / len(accuracies)
    return out
