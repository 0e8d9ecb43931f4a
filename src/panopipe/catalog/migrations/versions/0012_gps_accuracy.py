"""images.gps_accuracy_m: the horizontal accuracy of an image's position in metres (EXIF GPSHPositioningError)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 21:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE, as in revision 0008. Images ingested before have none: ingest reads it from files
    # that carry it when they are ingested again, and an edit sets it (a PPK solution's accuracy).
    op.add_column("images", sa.Column("gps_accuracy_m", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("gps_accuracy_m")
