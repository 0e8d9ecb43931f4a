"""artifacts.checked_at: when the planner last found an artifact up to date

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 22:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import panopipe.catalog.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checked_at", panopipe.catalog.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_column("checked_at")
