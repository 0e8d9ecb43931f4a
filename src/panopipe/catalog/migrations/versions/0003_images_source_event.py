"""images.source_sequencer and source_version_id: the S3 event last applied to each image

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 22:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_sequencer", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("source_version_id", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("source_version_id")
        batch_op.drop_column("source_sequencer")
