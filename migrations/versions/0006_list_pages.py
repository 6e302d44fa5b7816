"""list pages: keyset indexes for jobs (created_at, id), one subject's audit trail (subject, id)
and a family's matrix rows (base_version_id, origin)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 02:10:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_created", "jobs", ["created_at", "id"])
    op.create_index("ix_audit_subject", "audit_events", ["subject", "id"])
    op.create_index("ix_patches_sources", "patches", ["base_version_id", "origin"])


def downgrade() -> None:
    op.drop_index("ix_patches_sources", table_name="patches")
    op.drop_index("ix_audit_subject", table_name="audit_events")
    op.drop_index("ix_jobs_created", table_name="jobs")
