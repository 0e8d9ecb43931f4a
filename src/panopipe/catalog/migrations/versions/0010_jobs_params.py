"""jobs.params_hash, jobs.step_version: what a job was submitted with, recorded on its artifacts

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 17:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import panopipe.catalog.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE, as in revision 0008. Jobs recorded before have neither (their artifacts take the
    # parameters of the step that records them, as before).
    op.add_column(
        "jobs", sa.Column("params_hash", panopipe.catalog.types.ByteOrderedString(64), nullable=True)
    )
    op.add_column(
        "jobs", sa.Column("step_version", panopipe.catalog.types.ByteOrderedString(32), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("step_version")
        batch_op.drop_column("params_hash")
