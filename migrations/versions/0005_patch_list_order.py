"""patch list order: an index on (created_at, id), the keyset every page of patches walks

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 23:55:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_patches_created", "patches", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_patches_created", table_name="patches")
