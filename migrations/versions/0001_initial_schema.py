"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 04:27:29.341825
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_api_tokens_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "artifacts",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_artifacts")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_at"), ["at"], unique=False)

    op.create_table(
        "base_families",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("architecture", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_base_families")),
        sa.UniqueConstraint("name", name=op.f("uq_base_families_name")),
    )
    op.create_table(
        "domains",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domains")),
        sa.UniqueConstraint("name", name=op.f("uq_domains_name")),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=12), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('train', 'importance', 'port_all', 'port', 'evaluate')", name=op.f("ck_jobs_kind")
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name=op.f("ck_jobs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_jobs_dedupe_key")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_status_lease", ["status", "lease_until"], unique=False)
        batch_op.create_index("ix_jobs_status_run_after", ["status", "run_after"], unique=False)

    op.create_table(
        "base_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("family_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("source_uri", sa.Text(), nullable=False),
        sa.Column("revision", sa.String(length=100), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("model_type", sa.String(length=100), nullable=False),
        sa.Column("arch_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("tokenizer_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("config_digest", sa.String(length=64), nullable=False),
        sa.Column("weights_digest", sa.String(length=64), nullable=False),
        sa.Column("num_parameters", sa.BigInteger(), nullable=False),
        sa.Column("tensor_table", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('ready', 'deprecated')", name=op.f("ck_base_versions_status")),
        sa.ForeignKeyConstraint(
            ["family_id"], ["base_families.id"], name=op.f("fk_base_versions_family_id_base_families")
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["base_versions.id"], name=op.f("fk_base_versions_parent_id_base_versions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_base_versions")),
        sa.UniqueConstraint("family_id", "version", name=op.f("uq_base_versions_family_id_version")),
    )
    with op.batch_alter_table("base_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_base_versions_arch_fingerprint"), ["arch_fingerprint"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_base_versions_parent_id"), ["parent_id"], unique=False)

    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("artifact_digest", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("available_until", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('train', 'eval', 'general')", name=op.f("ck_datasets_role")),
        sa.ForeignKeyConstraint(
            ["artifact_digest"], ["artifacts.digest"], name=op.f("fk_datasets_artifact_digest_artifacts")
        ),
        sa.ForeignKeyConstraint(["domain_id"], ["domains.id"], name=op.f("fk_datasets_domain_id_domains")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("domain_id", "name", name=op.f("uq_datasets_domain_id_name")),
    )
    op.create_table(
        "patches",
        sa.Column("id", sa.String(length=12), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("base_version_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("method_config", sa.JSON(), nullable=False),
        sa.Column("artifact_digest", sa.String(length=64), nullable=False),
        sa.Column("trainable_params", sa.BigInteger(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.String(length=12), nullable=True),
        sa.Column("train_dataset_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.String(length=12), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "origin IN ('trained', 'ported', 'retrained', 'imported')", name=op.f("ck_patches_origin")
        ),
        sa.CheckConstraint(
            "status IN ('candidate', 'validated', 'degraded', 'rejected', 'deprecated')",
            name=op.f("ck_patches_status"),
        ),
        sa.ForeignKeyConstraint(
            ["artifact_digest"], ["artifacts.digest"], name=op.f("fk_patches_artifact_digest_artifacts")
        ),
        sa.ForeignKeyConstraint(
            ["base_version_id"], ["base_versions.id"], name=op.f("fk_patches_base_version_id_base_versions")
        ),
        sa.ForeignKeyConstraint(["domain_id"], ["domains.id"], name=op.f("fk_patches_domain_id_domains")),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_patches_job_id_jobs")),
        sa.ForeignKeyConstraint(["parent_id"], ["patches.id"], name=op.f("fk_patches_parent_id_patches")),
        sa.ForeignKeyConstraint(
            ["train_dataset_id"], ["datasets.id"], name=op.f("fk_patches_train_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patches")),
    )
    with op.batch_alter_table("patches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_patches_base_version_id"), ["base_version_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_patches_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index("ix_patches_resolve", ["domain_id", "base_version_id", "status"], unique=False)
        batch_op.create_index(
            "uq_patches_port",
            ["parent_id", "base_version_id"],
            unique=True,
            sqlite_where=sa.text("origin = 'ported'"),
            postgresql_where=sa.text("origin = 'ported'"),
        )

    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("base_version_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("patch_id", sa.String(length=12), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["base_version_id"], ["base_versions.id"], name=op.f("fk_aliases_base_version_id_base_versions")
        ),
        sa.ForeignKeyConstraint(["domain_id"], ["domains.id"], name=op.f("fk_aliases_domain_id_domains")),
        sa.ForeignKeyConstraint(["patch_id"], ["patches.id"], name=op.f("fk_aliases_patch_id_patches")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aliases")),
        sa.UniqueConstraint(
            "domain_id", "base_version_id", "name", name=op.f("uq_aliases_domain_id_base_version_id_name")
        ),
    )
    op.create_table(
        "compat_verdicts",
        sa.Column("patch_id", sa.String(length=12), nullable=False),
        sa.Column("base_version_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("portability", sa.JSON(), nullable=True),
        sa.Column("export_rank", sa.Integer(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "verdict IN ('compatible', 'incompatible')", name=op.f("ck_compat_verdicts_verdict")
        ),
        sa.ForeignKeyConstraint(
            ["base_version_id"],
            ["base_versions.id"],
            name=op.f("fk_compat_verdicts_base_version_id_base_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["patch_id"], ["patches.id"], name=op.f("fk_compat_verdicts_patch_id_patches")
        ),
        sa.PrimaryKeyConstraint("patch_id", "base_version_id", name=op.f("pk_compat_verdicts")),
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patch_id", sa.String(length=12), nullable=True),
        sa.Column("base_version_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=12), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["base_version_id"],
            ["base_versions.id"],
            name=op.f("fk_evaluations_base_version_id_base_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_evaluations_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_evaluations_job_id_jobs")),
        sa.ForeignKeyConstraint(["patch_id"], ["patches.id"], name=op.f("fk_evaluations_patch_id_patches")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
    )
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.create_index("ix_evaluations_base_dataset", ["base_version_id", "dataset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_evaluations_patch_id"), ["patch_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evaluations_patch_id"))
        batch_op.drop_index("ix_evaluations_base_dataset")

    op.drop_table("evaluations")
    op.drop_table("compat_verdicts")
    op.drop_table("aliases")
    with op.batch_alter_table("patches", schema=None) as batch_op:
        batch_op.drop_index("uq_patches_port")
        batch_op.drop_index("ix_patches_resolve")
        batch_op.drop_index(batch_op.f("ix_patches_parent_id"))
        batch_op.drop_index(batch_op.f("ix_patches_base_version_id"))

    op.drop_table("patches")
    op.drop_table("datasets")
    with op.batch_alter_table("base_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_base_versions_parent_id"))
        batch_op.drop_index(batch_op.f("ix_base_versions_arch_fingerprint"))

    op.drop_table("base_versions")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_run_after")
        batch_op.drop_index("ix_jobs_status_lease")

    op.drop_table("jobs")
    op.drop_table("domains")
    op.drop_table("base_families")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_at"))

    op.drop_table("audit_events")
    op.drop_table("artifacts")
    op.drop_table("api_tokens")
