"""patch import key: the same content imported twice into one (domain, base) is one patch

Existing imported patches get their key, except later duplicates of the same content, which keep a
null key (they stay as they are; only new imports are deduplicated).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 18:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BACKFILL = """
UPDATE patches SET import_key = domain_id || ':' || base_version_id || ':' || artifact_digest
WHERE origin = 'imported' AND NOT EXISTS (
    SELECT 1 FROM patches AS older
    WHERE older.origin = 'imported' AND older.domain_id = patches.domain_id
      AND older.base_version_id = patches.base_version_id
      AND older.artifact_digest = patches.artifact_digest
      AND (older.created_at < patches.created_at
           OR (older.created_at = patches.created_at AND older.id < patches.id))
)
"""


def upgrade() -> None:
    with op.batch_alter_table("patches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("import_key", sa.String(length=120), nullable=True))
    op.execute(BACKFILL)
    with op.batch_alter_table("patches", schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f("uq_patches_import_key"), ["import_key"])


def downgrade() -> None:
    with op.batch_alter_table("patches", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_patches_import_key"), type_="unique")
        batch_op.drop_column("import_key")
