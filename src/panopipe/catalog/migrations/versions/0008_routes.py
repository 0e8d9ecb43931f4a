"""routes (centerlines for linear referencing) and images.route, measure, route_offset_m

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import panopipe.catalog.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "routes",
        sa.Column("id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("name", panopipe.catalog.types.ByteOrderedString(128), nullable=False),
        sa.Column("coordinates", panopipe.catalog.types.JSONDocument, nullable=False),
        sa.Column("measures", panopipe.catalog.types.JSONDocument, nullable=True),
        sa.Column("start_measure", sa.Double(), nullable=True),
        sa.Column("unit", panopipe.catalog.types.ByteOrderedString(8), nullable=False),
        sa.Column("source", panopipe.catalog.types.ByteOrderedString(1024), nullable=True),
        sa.Column("created_at", panopipe.catalog.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", panopipe.catalog.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routes")),
        sa.UniqueConstraint("name", name=op.f("uq_routes_name")),
    )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("route", panopipe.catalog.types.ByteOrderedString(128), nullable=True))
        batch_op.add_column(sa.Column("measure", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("route_offset_m", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("route_offset_m")
        batch_op.drop_column("measure")
        batch_op.drop_column("route")
    op.drop_table("routes")
