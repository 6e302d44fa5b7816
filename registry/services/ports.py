"""Porting, registry side: the ported record, the plan of what to measure, and recording the result.

A ported patch is a new record on the target base that shares its parent's bytes (PortLLM).
Idempotent: porting the same patch to the same base again returns the patch made the first time.
The worker measures between `plan_port` and `record_port`, with no transaction open; the caller
puts `record_port` and the job's completion in one transaction, so a crash between measuring and
recording leaves nothing recorded and a rerun records exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from core.evidence import brief_rows
from core.forecast import forecast
from core.plans import PORT_ARMS, Decision, Measurement, MeasurePlan
from registry.conflicts import insert_or_ignore
from registry.models import Patch, short_id
from registry.schemas import PatchRead, PortPlan, PortReport, VerdictRead
from registry.services import audit, bases, compat, datasets, evaluations, patches
from registry.services.lookup import base_ref, get_base_version, get_patch
from registry.store import ArtifactStore

PORT_KEY = ["parent_id", "base_version_id"]  # with origin = 'ported': the index uq_patches_port


@dataclass(frozen=True)
class PortOutcome:
    verdict: VerdictRead
    patch: PatchRead | None  # None when the verdict is incompatible: nothing is created
    created: bool


def find_port(session: Session, source_id: str, target_version_id: int) -> Patch | None:
    return session.scalar(
        select(Patch).where(
            Patch.parent_id == source_id, Patch.base_version_id == target_version_id, Patch.origin == "ported"
        )
    )


def port_patch(
    session: Session, store: ArtifactStore, patch_id: str, base: str, job_id: str | None = None
) -> PortOutcome:
    """The verdict, and the ported record (made now, or the one made before) unless incompatible."""
    source = get_patch(session, patch_id)
    target = get_base_version(session, base)
    if source.base_version_id == target.id:
        raise InvalidInput(f"patch {source.id} already belongs to {base}")
    verdict = compat.check_compat(session, store, source.id, base)
    existing = find_port(session, source.id, target.id)
    if existing is not None:
        return PortOutcome(verdict, patches.to_read(existing), created=False)
    if verdict.verdict != "compatible":
        return PortOutcome(verdict, None, created=False)
    values = {
        "id": short_id(),
        "domain_id": source.domain_id,
        "base_version_id": target.id,
        "method": source.method,
        "method_config": source.method_config,
        "artifact_digest": source.artifact_digest,  # PortLLM: the same delta, no new bytes
        "trainable_params": source.trainable_params,
        "origin": "ported",
        "parent_id": source.id,
        "source_id": patches.source_for_copy_of(source),
        "train_dataset_id": source.train_dataset_id,
        "job_id": job_id,
        "status": "candidate",
        "metrics": {},
    }
    # One copy per (source, base) by a partial unique index: a concurrent port's copy is reused.
    if not insert_or_ignore(session, Patch, values, PORT_KEY, where=Patch.origin == "ported"):
        existing = find_port(session, source.id, target.id)
        assert existing is not None  # committed by the writer that won, hence visible
        return PortOutcome(verdict, patches.to_read(existing), created=False)
    ported = session.get(Patch, values["id"])
    assert ported is not None
    audit.record(
        session,
        "patch.ported",
        ported.id,
        source=source.id,
        source_base=base_ref(source.base_version),
        base=base,
    )
    return PortOutcome(verdict, patches.to_read(ported), created=True)


def plan_port(
    session: Session,
    store: ArtifactStore,
    patch_id: str,
    base: str,
    *,
    evaluate: bool = True,
    job_id: str | None = None,
) -> PortPlan:
    """Port `patch_id` onto `base` (verdict + record) and say what the worker must measure."""
    outcome = port_patch(session, store, patch_id, base, job_id)
    ported = outcome.patch
    source, target = get_patch(session, patch_id), get_base_version(session, base)
    source_base, target_base = base_ref(source.base_version), base_ref(target)
    plan = PortPlan(
        verdict=outcome.verdict,
        patch=ported,
        created=outcome.created,
        source_id=source.id,
        source_base=source_base,
        target_base=target_base,
    )
    if ported is None:
        return plan
    eval_sets = datasets.readable_eval_sets(session, store, ported.domain) if evaluate else []
    owners = _owners(source.id, ported.id, source_base, target_base)
    stored = {  # the ported patch is always measured afresh: it is what this port is about
        (s.dataset_id, arm): metrics
        for s in eval_sets
        for arm in PORT_ARMS
        if arm != "ported"
        and (metrics := evaluations.latest(session, *owners[arm], s.dataset_id, evidence=True)) is not None
    }
    measure = MeasurePlan(
        patch_path=store.local_path(source.artifact_digest),
        base_dir=bases.files_of(target),
        source_base_dir=bases.files_of(source.base_version),
        eval_sets=tuple(eval_sets),
        arms=dict(PORT_ARMS),
        stored=stored,
        portability=True,
    )
    why = None
    if not eval_sets:
        why = "not evaluated: " + ("--no-eval" if not evaluate else "the domain has no readable eval dataset")
    return plan.model_copy(update={"measure": measure, "why_not_evaluated": why})


def _owners(
    source_id: str, ported_id: str, source_base: str, target_base: str
) -> dict[str, tuple[str | None, str]]:
    """Whose numbers each arm are: (patch id or None for the base alone, base ref)."""
    return {
        "base": (None, target_base),
        "ported": (ported_id, target_base),
        "source_base": (None, source_base),
        "source": (source_id, source_base),
    }


def record_port(
    session: Session,
    plan: PortPlan,
    measured: Measurement | None,
    decision: Decision | None,
    job_id: str | None = None,
) -> PortReport:
    """Record what the worker measured for `plan`: portability statistics, the new evaluations,
    and the gate's decision on the ported patch. Returns the report people read."""
    report = PortReport(verdict=plan.verdict, patch=plan.patch, created=plan.created)
    if plan.patch is None or plan.measure is None:
        return report.model_copy(update={"why": "; ".join(r.message for r in plan.verdict.reasons)})
    assert measured is not None
    if measured.portability is not None:
        compat.record_portability(session, plan.source_id, plan.target_base, measured.portability)
    owners = _owners(plan.source_id, plan.patch.id, plan.source_base, plan.target_base)
    for eval_set, row in zip(plan.measure.eval_sets, measured.rows, strict=True):
        for arm in plan.measure.arms:
            if (eval_set.dataset_id, arm) not in plan.measure.stored:
                evaluations.record(session, *owners[arm], eval_set.dataset_id, row[arm], job_id)
    update: dict[str, object] = {
        "portability": measured.portability,
        "forecast": forecast(measured.portability),
        "rows": brief_rows(measured.rows),
        "noop": measured.noop,
        "why": plan.why_not_evaluated or "",
    }
    if decision is not None:
        update |= {
            "status": decision.status,
            "why": decision.why,
            "patch": patches.record_decision(session, plan.patch.id, decision),
        }
    return report.model_copy(update=update)
