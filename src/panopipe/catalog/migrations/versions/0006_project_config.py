"""project_config: the project's pipeline configuration, one row per pushed version

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 14:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import panopipe.catalog.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int | None = None) -> sa.types.TypeEngine[str]:
    """Text ordered by its bytes, as revision 0005 made every text column on PostgreSQL."""
    if length is None:
        return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "project_config",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("content", _text(), nullable=False),
        sa.Column("content_hash", _text(64), nullable=False),
        sa.Column("author", _text(128), nullable=False),
        sa.Column("reason", _text(), nullable=False),
        sa.Column("created_at", panopipe.catalog.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_project_config")),
    )


def downgrade() -> None:
    op.drop_table("project_config")
