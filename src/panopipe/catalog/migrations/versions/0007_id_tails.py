"""Indexes on the last group of image and edit batch ids, so that short ids are looked up by index

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tail(column: str) -> sa.TextClause:
    return sa.text(f"substr(replace(CAST({column} AS VARCHAR), '-', ''), 21)")


def upgrade() -> None:
    op.create_index("ix_images_id_tail", "images", [_tail("id")])
    op.create_index("ix_edits_batch_tail", "edits", [_tail("batch")])


def downgrade() -> None:
    op.drop_index("ix_edits_batch_tail", table_name="edits")
    op.drop_index("ix_images_id_tail", table_name="images")
