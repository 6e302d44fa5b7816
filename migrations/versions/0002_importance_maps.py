"""importance maps: ALEWR importance Ω per (base version, general dataset), kept for reuse

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 05:11:46.515281
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "importance_maps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("base_version_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("artifact_digest", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=12), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_digest"],
            ["artifacts.digest"],
            name=op.f("fk_importance_maps_artifact_digest_artifacts"),
        ),
        sa.ForeignKeyConstraint(
            ["base_version_id"],
            ["base_versions.id"],
            name=op.f("fk_importance_maps_base_version_id_base_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_importance_maps_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_importance_maps")),
        sa.UniqueConstraint(
            "base_version_id", "dataset_id", name=op.f("uq_importance_maps_base_version_id_dataset_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("importance_maps")
