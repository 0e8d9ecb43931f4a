"""The catalog's tables. Alembic migrations in ``migrations/`` create exactly these (a test checks it)."""

from __future__ import annotations

import sqlalchemy as sa

from panopipe.catalog.types import BigIntId, ByteOrderedString, JSONDocument, UTCDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = sa.Uuid(as_uuid=False)

images = sa.Table(
    "images",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("uri", ByteOrderedString(1024), nullable=False, unique=True),
    sa.Column("size", sa.BigInteger),
    sa.Column("content_hash", ByteOrderedString(64)),
    sa.Column("etag", ByteOrderedString(80)),
    sa.Column("modified_at", UTCDateTime),
    # Effective metadata: captured values overlaid with active edits (see ``captured``).
    sa.Column("captured_at", UTCDateTime),
    sa.Column("utc_offset_minutes", sa.Integer),
    sa.Column("lat", sa.Double),
    sa.Column("lon", sa.Double),
    sa.Column("alt", sa.Double),
    # Horizontal accuracy of lat/lon in metres (EXIF GPSHPositioningError), from the receiver or a PPK solution.
    sa.Column("gps_accuracy_m", sa.Double),
    sa.Column("heading", sa.Double),
    sa.Column("pitch", sa.Double),
    sa.Column("roll", sa.Double),
    sa.Column("make", ByteOrderedString(128)),
    sa.Column("model", ByteOrderedString(128)),
    sa.Column("camera_serial", ByteOrderedString(128)),
    sa.Column("camera_index", sa.Integer),
    sa.Column("width", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("projection", ByteOrderedString(32)),
    sa.Column("reel", ByteOrderedString(128)),
    sa.Column("frame", sa.Integer),
    sa.Column("shot", ByteOrderedString(160)),
    sa.Column("extra", JSONDocument),
    # The values the file itself carries for the fields that active edits override, so undo can restore them.
    sa.Column("captured", JSONDocument),
    sa.Column("status", ByteOrderedString(16), nullable=False, server_default="ok"),
    sa.Column("error", ByteOrderedString()),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    # Left out of processing and publishing by an edit (``qc --fix`` thinning), the record and file kept.
    sa.Column("excluded", sa.Boolean, nullable=False, server_default=sa.false()),
    # Where ``panopipe route locate`` put the image: the route's name, the measure (milepost, in the route's
    # unit) and the signed offset from the line in metres (positive to the right of the line as drawn).
    sa.Column("route", ByteOrderedString(128)),
    sa.Column("measure", sa.Double),
    sa.Column("route_offset_m", sa.Double),
    # The S3 event last applied: its sequencer, upper-case and zero-left-padded so that text order is event
    # order (events apply only WHERE the stored one is lower), and the object version it named.
    sa.Column("source_sequencer", ByteOrderedString(64)),
    sa.Column("source_version_id", ByteOrderedString(1024)),
    sa.Column("ingested_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index(None, "captured_at"),
    sa.Index(None, "lat", "lon"),
    sa.Index(None, "reel", "frame"),
    sa.Index(None, "shot"),
    sa.Index(None, "content_hash"),
)


def uuid_tail(column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """The last group of the UUIDs in ``column`` (their 12 random hex digits), as the tail indexes index it:
    the same text on both backends (PostgreSQL prints UUIDs with dashes, SQLite stores 32 hex digits)."""
    text = sa.func.replace(sa.cast(column, sa.String), sa.literal_column("'-'"), sa.literal_column("''"))
    return sa.func.substr(text, sa.literal_column("21"), type_=sa.String)


sa.Index("ix_images_id_tail", uuid_tail(images.c.id))  # short ids (see panopipe.catalog.short_ids)

edits = sa.Table(
    "edits",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("batch", ID, nullable=False, index=True),
    sa.Column("image_id", ID, sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    sa.Column("field", ByteOrderedString(32), nullable=False),
    sa.Column("old_value", JSONDocument),
    sa.Column("new_value", JSONDocument),
    sa.Column("author", ByteOrderedString(128), nullable=False),
    sa.Column("reason", ByteOrderedString(), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("undone_at", UTCDateTime),
    sa.Column("undone_by", ByteOrderedString(128)),
    sa.Index(None, "image_id", "field"),
)
sa.Index("ix_edits_batch_tail", uuid_tail(edits.c.batch))
EXPRESSION_INDEXES = ("ix_edits_batch_tail", "ix_images_id_tail")
"""Indexes on expressions, which Alembic cannot compare (PostgreSQL prints them back in its own words)."""

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("step", ByteOrderedString(64), nullable=False),
    sa.Column("subject", ByteOrderedString(200), nullable=False),
    sa.Column("name", ByteOrderedString(64), nullable=False),
    sa.Column("image_id", ID, sa.ForeignKey("images.id", ondelete="SET NULL")),
    sa.Column("shot", ByteOrderedString(160)),
    sa.Column("step_version", ByteOrderedString(32), nullable=False),
    sa.Column("params_hash", ByteOrderedString(64), nullable=False),
    sa.Column("fingerprint", ByteOrderedString(64), nullable=False),
    sa.Column("output_uri", ByteOrderedString(1024), nullable=False),
    sa.Column("output_hash", ByteOrderedString(64)),
    sa.Column("output_size", sa.BigInteger),
    sa.Column("job_id", ID),
    sa.Column("orphaned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # When the planner last found the artifact's fingerprint matching its inputs (a candidate that was not
    # stale); later plans look for changes after this time only.
    sa.Column("checked_at", UTCDateTime),
    sa.UniqueConstraint("step", "subject", "name"),
    sa.Index(None, "image_id"),
    sa.Index(None, "shot"),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("step", ByteOrderedString(64), nullable=False),
    sa.Column("subject", ByteOrderedString(200), nullable=False),
    sa.Column("fingerprint", ByteOrderedString(64), nullable=False),
    # What the job was submitted with (its artifacts record them, whatever the configuration is when its
    # result is recorded); NULL on jobs recorded before revision 0010.
    sa.Column("params_hash", ByteOrderedString(64)),
    sa.Column("step_version", ByteOrderedString(32)),
    sa.Column("status", ByteOrderedString(16), nullable=False),
    sa.Column("reason", ByteOrderedString()),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("executor", ByteOrderedString(32)),
    sa.Column("external_id", ByteOrderedString(256)),
    sa.Column("error", ByteOrderedString()),
    sa.Column("log", ByteOrderedString()),
    sa.Column("submitted_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime),
    sa.Column("finished_at", UTCDateTime),
    sa.UniqueConstraint("step", "subject", "fingerprint"),
    sa.Index(None, "status"),
)

project_config = sa.Table(
    "project_config",
    metadata,
    # One row per pushed version of the project's configuration (``panopipe config push``); the newest applies.
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("content", ByteOrderedString(), nullable=False),  # canonical JSON, exactly as hashed
    sa.Column("content_hash", ByteOrderedString(64), nullable=False),
    sa.Column("author", ByteOrderedString(128), nullable=False),
    sa.Column("reason", ByteOrderedString(), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)


image_flags = sa.Table(
    "image_flags",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("image_id", ID, sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    sa.Column("flag", ByteOrderedString(32), nullable=False),
    # What the check measured (e.g. metres from the smoothed track) and a sentence for people.
    sa.Column("value", sa.Double),
    sa.Column("detail", ByteOrderedString()),
    sa.Column("qc_version", ByteOrderedString(16), nullable=False),
    sa.Column("run", ID, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("image_id", "flag"),
    sa.Index(None, "flag"),
)

routes = sa.Table(
    "routes",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", ByteOrderedString(128), nullable=False, unique=True),
    # The centerline: [lon, lat] vertices (WGS 84), their measures (or none: from start_measure and length).
    sa.Column("coordinates", JSONDocument, nullable=False),
    sa.Column("measures", JSONDocument),
    sa.Column("start_measure", sa.Double),
    sa.Column("unit", ByteOrderedString(8), nullable=False),
    sa.Column("source", ByteOrderedString(1024)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

file_copies = sa.Table(
    "file_copies",
    metadata,
    # Files found to hold an image's content where the image is not (the capture folder a sync uploaded, a
    # copy): with what tells whether they changed, as for the images' own files, so ingest reads them no more
    # while the image has that content.
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("uri", ByteOrderedString(1024), nullable=False, unique=True),
    sa.Column("image_id", ID, sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    sa.Column("content_hash", ByteOrderedString(64), nullable=False),
    sa.Column("size", sa.BigInteger),
    sa.Column("etag", ByteOrderedString(80)),
    sa.Column("modified_at", UTCDateTime),
    sa.Index(None, "image_id"),
)


__all__ = [
    "EXPRESSION_INDEXES",
    "ID",
    "artifacts",
    "edits",
    "file_copies",
    "image_flags",
    "images",
    "jobs",
    "metadata",
    "project_config",
    "routes",
    "uuid_tail",
]
