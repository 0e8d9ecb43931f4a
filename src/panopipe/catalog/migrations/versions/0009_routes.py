"""routes (centerlines for linear referencing) and images.route, measure, route_offset_m

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import panopipe.catalog.types

revision: str = "0009"
down_revision: str | None = "0008"
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
    # Plain ALTER TABLE, as in revision 0008: a batch rebuild on SQLite would lose the expression index of 0007.
    op.add_column("images", sa.Column("route", panopipe.catalog.types.ByteOrderedString(128), nullable=True))
    op.add_column("images", sa.Column("measure", sa.Double(), nullable=True))
    op.add_column("images", sa.Column("route_offset_m", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("route_offset_m")
        batch_op.drop_column("measure")
        batch_op.drop_column("route")
    if op.get_bind().dialect.name == "sqlite":
        op.create_index(
            "ix_images_id_tail", "images", [sa.text("substr(replace(CAST(id AS VARCHAR), '-', ''), 21)")]
        )
    op.drop_table("routes")
