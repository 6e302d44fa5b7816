"""the gate's evidence: evaluations keep their per-row scores; patches may be `inconclusive`

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 03:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD = "status IN ('candidate', 'validated', 'degraded', 'rejected', 'deprecated')"
NEW = "status IN ('candidate', 'validated', 'degraded', 'inconclusive', 'rejected', 'deprecated')"


def _status_check(allowed: str) -> None:
    # SQLite rebuilds the table for this (registry/migrate.py runs migrations with its foreign
    # keys off and checks them after); PostgreSQL swaps the constraint in place.
    with op.batch_alter_table("patches") as batch:
        batch.drop_constraint(op.f("ck_patches_status"), type_="check")
        batch.create_check_constraint(op.f("ck_patches_status"), allowed)


def upgrade() -> None:
    op.add_column("evaluations", sa.Column("per_row", sa.JSON(), nullable=True))
    _status_check(NEW)


def downgrade() -> None:
    op.execute("UPDATE patches SET status = 'candidate' WHERE status = 'inconclusive'")
    _status_check(OLD)
    op.drop_column("evaluations", "per_row")
