"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 21:23:36.465680
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import panopipe.catalog.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("uri", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("etag", sa.String(length=80), nullable=True),
        sa.Column("modified_at", panopipe.catalog.types.UTCDateTime(), nullable=True),
        sa.Column("captured_at", panopipe.catalog.types.UTCDateTime(), nullable=True),
        sa.Column("utc_offset_minutes", sa.Integer(), nullable=True),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("lon", sa.Double(), nullable=True),
        sa.Column("alt", sa.Double(), nullable=True),
        sa.Column("heading", sa.Double(), nullable=True),
        sa.Column("pitch", sa.Double(), nullable=True),
        sa.Column("roll", sa.Double(), nullable=True),
        sa.Column("make", sa.String(length=128), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("camera_serial", sa.String(length=128), nullable=True),
        sa.Column("camera_index", sa.Integer(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("projection", sa.String(length=32), nullable=True),
        sa.Column("reel", sa.String(length=128), nullable=True),
        sa.Column("frame", sa.Integer(), nullable=True),
        sa.Column("shot", sa.String(length=160), nullable=True),
        sa.Column("extra", panopipe.catalog.types.JSONDocument, nullable=True),
        sa.Column("captured", panopipe.catalog.types.JSONDocument, nullable=True),
        sa.Column("status", sa.String(length=16), server_default="ok", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("ingested_at", panopipe.catalog.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", panopipe.catalog.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("uri", name=op.f("uq_images_uri")),
    )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_images_captured_at"), ["captured_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_images_content_hash"), ["content_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_images_lat_lon"), ["lat", "lon"], unique=False)
        batch_op.create_index(batch_op.f("ix_images_reel_frame"), ["reel", "frame"], unique=False)
        batch_op.create_index(batch_op.f("ix_images_shot"), ["shot"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("executor", sa.String(length=32), nullable=True),
        sa.Column("external_id", sa.String(length=256), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("log", sa.Text(), nullable=True),
        sa.Column("submitted_at", panopipe.catalog.types.UTCDateTime(), nullable=False),
        sa.Column("started_at", panopipe.catalog.types.UTCDateTime(), nullable=True),
        sa.Column("finished_at", panopipe.catalog.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("step", "subject", "fingerprint", name=op.f("uq_jobs_step_subject_fingerprint")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_status"), ["status"], unique=False)

    op.create_table(
        "artifacts",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("image_id", sa.Uuid(as_uuid=False), nullable=True),
        sa.Column("shot", sa.String(length=160), nullable=True),
        sa.Column("step_version", sa.String(length=32), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("output_uri", sa.String(length=1024), nullable=False),
        sa.Column("output_hash", sa.String(length=64), nullable=True),
        sa.Column("output_size", sa.BigInteger(), nullable=True),
        sa.Column("job_id", sa.Uuid(as_uuid=False), nullable=True),
        sa.Column("orphaned", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", panopipe.catalog.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_artifacts_image_id_images"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint("step", "subject", "name", name=op.f("uq_artifacts_step_subject_name")),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artifacts_image_id"), ["image_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_artifacts_shot"), ["shot"], unique=False)

    op.create_table(
        "edits",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("batch", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("image_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("field", sa.String(length=32), nullable=False),
        sa.Column("old_value", panopipe.catalog.types.JSONDocument, nullable=True),
        sa.Column("new_value", panopipe.catalog.types.JSONDocument, nullable=True),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", panopipe.catalog.types.UTCDateTime(), nullable=False),
        sa.Column("undone_at", panopipe.catalog.types.UTCDateTime(), nullable=True),
        sa.Column("undone_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_edits_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edits")),
    )
    with op.batch_alter_table("edits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_edits_batch"), ["batch"], unique=False)
        batch_op.create_index(batch_op.f("ix_edits_image_id_field"), ["image_id", "field"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("edits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_edits_image_id_field"))
        batch_op.drop_index(batch_op.f("ix_edits_batch"))

    op.drop_table("edits")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifacts_shot"))
        batch_op.drop_index(batch_op.f("ix_artifacts_image_id"))

    op.drop_table("artifacts")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_status"))

    op.drop_table("jobs")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_images_shot"))
        batch_op.drop_index(batch_op.f("ix_images_reel_frame"))
        batch_op.drop_index(batch_op.f("ix_images_lat_lon"))
        batch_op.drop_index(batch_op.f("ix_images_content_hash"))
        batch_op.drop_index(batch_op.f("ix_images_captured_at"))

    op.drop_table("images")
