"""image_flags (what ``panopipe qc`` found per image) and images.excluded (thinned out by an edit)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import panopipe.catalog.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Columns are added with plain ALTER TABLE (SQLite can): batch mode would rebuild ``images`` on SQLite and lose
# the expression index of revision 0007, which reflection cannot see; a downgrade's rebuild puts it back.
_ID_TAIL = sa.text("substr(replace(CAST(id AS VARCHAR), '-', ''), 21)")


def upgrade() -> None:
    op.add_column("images", sa.Column("excluded", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "image_flags",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("image_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("flag", panopipe.catalog.types.ByteOrderedString(32), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("detail", panopipe.catalog.types.ByteOrderedString(), nullable=True),
        sa.Column("qc_version", panopipe.catalog.types.ByteOrderedString(16), nullable=False),
        sa.Column("run", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("created_at", panopipe.catalog.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_flags_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_flags")),
        sa.UniqueConstraint("image_id", "flag", name=op.f("uq_image_flags_image_id_flag")),
    )
    with op.batch_alter_table("image_flags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_image_flags_flag"), ["flag"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("image_flags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_flags_flag"))
    op.drop_table("image_flags")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("excluded")
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_images_id_tail", "images", [_ID_TAIL])
