"""file_copies: files found to hold an image's content where the image is not, which ingest reads no more

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 16:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import panopipe.catalog.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "file_copies",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("uri", panopipe.catalog.types.ByteOrderedString(1024), nullable=False),
        sa.Column("image_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("content_hash", panopipe.catalog.types.ByteOrderedString(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("etag", panopipe.catalog.types.ByteOrderedString(80), nullable=True),
        sa.Column("modified_at", panopipe.catalog.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_file_copies_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_copies")),
        sa.UniqueConstraint("uri", name=op.f("uq_file_copies_uri")),
    )
    with op.batch_alter_table("file_copies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_file_copies_image_id"), ["image_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("file_copies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_file_copies_image_id"))
    op.drop_table("file_copies")
