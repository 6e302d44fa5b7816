"""Evaluations: metrics of a base alone or a base plus a patch, on one dataset."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.evidence import PER_ROW, summary_only
from core.plans import EVALUATE_ARMS, Decision, Measurement, MeasurePlan
from registry.models import Dataset, Domain, Evaluation
from registry.schemas import EvaluationPlan, EvaluationRead, PatchRead
from registry.services import audit, bases, datasets, patches
from registry.services.lookup import base_ref, get_base_version, get_patch
from registry.store import ArtifactStore


def to_read(e: Evaluation) -> EvaluationRead:
    return EvaluationRead(
        patch_id=e.patch_id,
        base=base_ref(e.base_version),
        dataset=f"{e.dataset.domain.name}/{e.dataset.name}",
        metrics=e.metrics,
        job_id=e.job_id,
        created_at=e.created_at,
    )


def latest(
    session: Session, patch_id: str | None, base: str, dataset_id: int, *, evidence: bool = False
) -> dict[str, Any] | None:
    """The newest stored metrics for this (patch or base alone, base, dataset), if any. A dataset is
    its content: numbers measured on another dataset with the same bytes (one eval file registered
    for several domains) are the same numbers, so they are found too and never measured twice.

    With `evidence`, only an evaluation that kept its per-row evidence counts (a gate pairs rows),
    returned under `core.evidence.PER_ROW`."""
    version = get_base_version(session, base)
    digest = select(Dataset.artifact_digest).where(Dataset.id == dataset_id).scalar_subquery()
    stmt = (
        select(Evaluation.metrics, Evaluation.per_row)
        .join(Dataset, Evaluation.dataset_id == Dataset.id)
        .where(
            Evaluation.base_version_id == version.id,
            Dataset.artifact_digest == digest,
            Evaluation.patch_id.is_(None) if patch_id is None else Evaluation.patch_id == patch_id,
        )
        .order_by(Evaluation.id.desc())
        .limit(1)
    )
    if evidence:
        stmt = stmt.where(Evaluation.per_row.is_not(None))
    found = session.execute(stmt).first()
    if found is None:
        return None
    metrics, per_row = found
    return {**metrics, PER_ROW: per_row} if evidence else dict(metrics)


def record(
    session: Session,
    patch_id: str | None,
    base: str,
    dataset_id: int,
    metrics: dict[str, Any],
    job_id: str | None = None,
) -> EvaluationRead:
    version = get_base_version(session, base)
    row = Evaluation(
        patch_id=patch_id,
        base_version_id=version.id,
        dataset_id=dataset_id,
        metrics=summary_only(metrics),
        per_row=metrics.get(PER_ROW),
        job_id=job_id,
    )
    session.add(row)
    session.flush()
    audit.record(
        session, "evaluation.record", patch_id or base, base=base, dataset=dataset_id, **_brief(metrics)
    )
    return to_read(row)


def list_for(session: Session, patch_id: str | None = None, base: str | None = None) -> list[EvaluationRead]:
    stmt = select(Evaluation).join(Dataset).join(Domain).order_by(Evaluation.id)
    if patch_id is not None:
        stmt = stmt.where(Evaluation.patch_id == patch_id)
    if base is not None:
        stmt = stmt.where(Evaluation.base_version_id == get_base_version(session, base).id)
    return [to_read(e) for e in session.scalars(stmt)]


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in ("loss", "accuracy") if k in metrics}


def plan_evaluation(session: Session, store: ArtifactStore, patch_id: str) -> EvaluationPlan:
    """What an `evaluate` job measures: a trained or imported patch against its own base alone; a
    ported patch is re-checked through its port instead (`port_of`)."""
    patch = get_patch(session, patch_id)
    base = base_ref(patch.base_version)
    if patch.origin == "ported" and patch.parent_id is not None:
        return EvaluationPlan(patch_id=patch.id, base=base, port_of=(patch.parent_id, base))
    eval_sets = datasets.readable_eval_sets(session, store, patch.domain.name)
    if not eval_sets:
        return EvaluationPlan(patch_id=patch.id, base=base)
    stored = {
        (s.dataset_id, "base"): metrics
        for s in eval_sets
        if (metrics := latest(session, None, base, s.dataset_id, evidence=True)) is not None
    }
    measure = MeasurePlan(
        patch_path=store.local_path(patch.artifact_digest),
        base_dir=bases.files_of(patch.base_version),
        eval_sets=tuple(eval_sets),
        arms=dict(EVALUATE_ARMS),
        stored=stored,
    )
    return EvaluationPlan(patch_id=patch.id, base=base, measure=measure)


def record_evaluation(
    session: Session, plan: EvaluationPlan, measured: Measurement, decision: Decision, job_id: str | None
) -> PatchRead:
    """The new evaluations and the gate's decision (the status only while still a candidate)."""
    assert plan.measure is not None
    owners = {"base": None, "patch": plan.patch_id}
    for eval_set, row in zip(plan.measure.eval_sets, measured.rows, strict=True):
        for arm in plan.measure.arms:
            if (eval_set.dataset_id, arm) not in plan.measure.stored:
                record(session, owners[arm], plan.base, eval_set.dataset_id, row[arm], job_id)
    return patches.record_decision(session, plan.patch_id, decision, only_if_candidate=True)
