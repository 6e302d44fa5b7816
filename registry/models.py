"""The ORM: every table of the data model.

ORM classes are imported only inside `registry/` (a test enforces it); services hand out schemas
(`registry.schemas`) and plans (`core.plans`), never rows.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.vocab import (
    BASE_STATUSES,
    DATASET_ROLES,
    JOB_KINDS,
    JOB_STATUSES,
    PATCH_ORIGINS,
    PATCH_STATUSES,
    VERDICTS,
)
from registry.db import Base, utcnow


def short_id() -> str:
    """12 hex digits: short enough to type, and the CLI accepts any unique prefix."""
    return uuid.uuid4().hex[:12]


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class BaseFamily(Base):
    __tablename__ = "base_families"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    architecture: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    versions: Mapped[list[BaseVersion]] = relationship(back_populates="family")


class BaseVersion(Base):
    __tablename__ = "base_versions"
    __table_args__ = (
        UniqueConstraint("family_id", "version"),
        CheckConstraint(_in("status", BASE_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("base_families.id"))
    version: Mapped[str] = mapped_column(String(100))
    source_uri: Mapped[str] = mapped_column(Text)
    revision: Mapped[str | None] = mapped_column(String(100))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("base_versions.id"), index=True)
    model_type: Mapped[str] = mapped_column(String(100))
    arch_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    tokenizer_fingerprint: Mapped[str | None] = mapped_column(String(64))
    config_digest: Mapped[str] = mapped_column(String(64))
    weights_digest: Mapped[str] = mapped_column(String(64))
    num_parameters: Mapped[int] = mapped_column(BigInteger)
    tensor_table: Mapped[list[Any]] = mapped_column()
    # config.json without volatile keys: which architecture this is (`core.arch`) and its sizes.
    # Null for versions registered before revision 0003; their architecture comes from model_type.
    config: Mapped[dict[str, Any] | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="ready")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    family: Mapped[BaseFamily] = relationship(back_populates="versions")
    parent: Mapped[BaseVersion | None] = relationship(remote_side=[id])


class Domain(Base):
    __tablename__ = "domains"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Artifact(Base):
    __tablename__ = "artifacts"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (
        UniqueConstraint("domain_id", "name"),
        CheckConstraint(_in("role", DATASET_ROLES), name="role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    artifact_digest: Mapped[str] = mapped_column(ForeignKey("artifacts.digest"))
    rows: Mapped[int] = mapped_column(Integer)
    available_until: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    domain: Mapped[Domain] = relationship()
    artifact: Mapped[Artifact] = relationship()


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("kind", JOB_KINDS), name="kind"),
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        Index("ix_jobs_status_lease", "status", "lease_until"),
        Index("ix_jobs_status_run_after", "status", "run_after"),
        Index("ix_jobs_created", "created_at", "id"),  # the keyset of every page of jobs
    )

    id: Mapped[str] = mapped_column(String(12), primary_key=True, default=short_id)
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column()
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any] | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Patch(Base):
    __tablename__ = "patches"
    __table_args__ = (
        CheckConstraint(_in("origin", PATCH_ORIGINS), name="origin"),
        CheckConstraint(_in("status", PATCH_STATUSES), name="status"),
        Index("ix_patches_resolve", "domain_id", "base_version_id", "status"),
        Index("ix_patches_created", "created_at", "id"),  # the keyset of every page of patches
        Index("ix_patches_sources", "base_version_id", "origin"),  # a family's matrix rows
        # One ported copy per (source, target base), even when two workers race to make it.
        Index(
            "uq_patches_port",
            "parent_id",
            "base_version_id",
            unique=True,
            sqlite_where=text("origin = 'ported'"),
            postgresql_where=text("origin = 'ported'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(12), primary_key=True, default=short_id)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    base_version_id: Mapped[int] = mapped_column(ForeignKey("base_versions.id"), index=True)
    method: Mapped[str] = mapped_column(String(32))
    method_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    artifact_digest: Mapped[str] = mapped_column(ForeignKey("artifacts.digest"))
    trainable_params: Mapped[int] = mapped_column(BigInteger)
    origin: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("patches.id"), index=True)
    # The nearest patch up the lineage that is not a ported copy: itself for a trained, imported or
    # retrained patch. A matrix row is a source with every copy carrying its id, found by this
    # index without walking the lineage (PostgreSQL plans a recursive walk as a hash of every
    # ported patch). Set on insert; null only on rows a migration could not reach.
    source_id: Mapped[str | None] = mapped_column(String(12), index=True)
    train_dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"))
    status: Mapped[str] = mapped_column(String(16), default="candidate")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # "domain:base:digest" for an imported patch, so the same content imported twice is one row
    # (null for trained and ported patches, and for duplicates imported before revision 0004).
    import_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    domain: Mapped[Domain] = relationship()
    base_version: Mapped[BaseVersion] = relationship()
    artifact: Mapped[Artifact] = relationship()
    train_dataset: Mapped[Dataset | None] = relationship()
    parent: Mapped[Patch | None] = relationship(remote_side=[id])


class CompatVerdict(Base):
    __tablename__ = "compat_verdicts"
    __table_args__ = (CheckConstraint(_in("verdict", VERDICTS), name="verdict"),)

    patch_id: Mapped[str] = mapped_column(ForeignKey("patches.id"), primary_key=True)
    base_version_id: Mapped[int] = mapped_column(ForeignKey("base_versions.id"), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    portability: Mapped[dict[str, Any] | None] = mapped_column()
    export_rank: Mapped[int | None] = mapped_column(Integer)
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)


class Evaluation(Base):
    __tablename__ = "evaluations"
    __table_args__ = (Index("ix_evaluations_base_dataset", "base_version_id", "dataset_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patch_id: Mapped[str | None] = mapped_column(ForeignKey("patches.id"), index=True)
    base_version_id: Mapped[int] = mapped_column(ForeignKey("base_versions.id"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # per-row evidence for the gate's paired statistics (`core.evidence`): {"scores": [...],
    # "correct": [...]}, one entry per eval row; loaded only when a gate asks (null before 0007)
    per_row: Mapped[dict[str, Any] | None] = mapped_column(deferred=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    base_version: Mapped[BaseVersion] = relationship()
    dataset: Mapped[Dataset] = relationship()


class Alias(Base):
    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("domain_id", "base_version_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    base_version_id: Mapped[int] = mapped_column(ForeignKey("base_versions.id"))
    name: Mapped[str] = mapped_column(String(100))
    patch_id: Mapped[str] = mapped_column(ForeignKey("patches.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AuditEvent(Base):
    """Append-only: services add rows, nothing updates or deletes them."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_subject", "subject", "id"),)  # one subject's trail, newest first

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(300))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class ImportanceMap(Base):
    """An ALEWR importance map Ω of one base version, measured on one general dataset.

    Computing Ω costs a short training run, so it is kept (as a blob) and reused by every
    regularised training job on that base.
    """

    __tablename__ = "importance_maps"
    __table_args__ = (UniqueConstraint("base_version_id", "dataset_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    base_version_id: Mapped[int] = mapped_column(ForeignKey("base_versions.id"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    artifact_digest: Mapped[str] = mapped_column(ForeignKey("artifacts.digest"))
    job_id: Mapped[str | None] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    base_version: Mapped[BaseVersion] = relationship()
    dataset: Mapped[Dataset] = relationship()
