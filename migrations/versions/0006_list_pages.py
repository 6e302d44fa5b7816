"""list pages: keyset indexes for jobs (created_at, id), one subject's audit trail (subject, id)
and a family's matrix rows (base_version_id, origin); patches.source_id (a copy's source), filled in

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 02:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_created", "jobs", ["created_at", "id"])
    op.create_index("ix_audit_subject", "audit_events", ["subject", "id"])
    op.create_index("ix_patches_sources", "patches", ["base_version_id", "origin"])
    op.add_column("patches", sa.Column("source_id", sa.String(12), nullable=True))
    # every source is its own; each ported copy takes its parent's, down the chains
    op.execute(
        """
        WITH RECURSIVE chain(id, source) AS (
            SELECT id, id FROM patches WHERE origin <> 'ported'
            UNION ALL
            SELECT p.id, chain.source FROM patches p JOIN chain ON p.parent_id = chain.id
            WHERE p.origin = 'ported'
        )
        UPDATE patches SET source_id = (SELECT chain.source FROM chain WHERE chain.id = patches.id)
        """
    )
    op.create_index("ix_patches_source_id", "patches", ["source_id"])


def downgrade() -> None:
    op.drop_index("ix_patches_source_id", table_name="patches")
    # a plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35): a batch copy of `patches` would drop a table
    # that other tables' foreign keys reference
    op.drop_column("patches", "source_id")
    op.drop_index("ix_patches_sources", table_name="patches")
    op.drop_index("ix_audit_subject", table_name="audit_events")
    op.drop_index("ix_jobs_created", table_name="jobs")
