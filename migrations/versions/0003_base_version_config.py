"""base version config: the stable config.json dict of each base version (architecture, sizes)

Rows registered before this revision keep a null config; patchreg then derives their architecture
from model_type, and re-registering the checkpoint records the config.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("base_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("base_versions", schema=None) as batch_op:
        batch_op.drop_column("config")
