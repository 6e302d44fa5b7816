"""Evaluations: metrics of a base alone or a base plus a patch, on one dataset."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.models import Dataset, Domain, Evaluation
from registry.schemas import EvaluationRead
from registry.services import audit
from registry.services.lookup import base_ref, get_base_version, get_domain


def to_read(e: Evaluation) -> EvaluationRead:
    return EvaluationRead(
        patch_id=e.patch_id,
        base=base_ref(e.base_version),
        dataset=f"{e.dataset.domain.name}/{e.dataset.name}",
        metrics=e.metrics,
        job_id=e.job_id,
        created_at=e.created_at,
    )


def eval_datasets(session: Session, domain: str) -> list[Dataset]:
    """The domain's eval datasets, oldest first (ORM rows: for the worker bridge only)."""
    domain_row = get_domain(session, domain)
    return list(
        session.scalars(
            select(Dataset)
            .where(Dataset.domain_id == domain_row.id, Dataset.role == "eval")
            .order_by(Dataset.id)
        )
    )


def latest(session: Session, patch_id: str | None, base: str, dataset_id: int) -> dict[str, Any] | None:
    """The newest stored metrics for this (patch or base alone, base, dataset), if any."""
    version = get_base_version(session, base)
    stmt = (
        select(Evaluation.metrics)
        .where(
            Evaluation.base_version_id == version.id,
            Evaluation.dataset_id == dataset_id,
            Evaluation.patch_id.is_(None) if patch_id is None else Evaluation.patch_id == patch_id,
        )
        .order_by(Evaluation.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)


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
        patch_id=patch_id, base_version_id=version.id, dataset_id=dataset_id, metrics=metrics, job_id=job_id
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
