"""images.geom: a generated PostGIS point with a GiST index, on PostgreSQL where PostGIS can be had

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 23:00:00.000000
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(__name__)


_INSTALLED = sa.text(
    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'postgis'"
)


def _postgis_schema(bind: sa.Connection) -> str | None:
    """The schema holding PostGIS, creating the extension if it is available and allowed.

    A new installation goes to a schema of its own, ``postgis``: in the catalog's schema its table
    ``spatial_ref_sys`` would make that schema look like it holds foreign tables.
    """
    if (schema := bind.execute(_INSTALLED).scalar_one_or_none()) is not None:
        return schema
    if not bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")).first():
        log.warning("PostGIS is not available: spatial queries use lat/lon ranges")
        return None
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE SCHEMA IF NOT EXISTS postgis"))
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis SCHEMA postgis"))
    except sa.exc.ProgrammingError as exc:  # no privilege
        log.warning("cannot create the postgis extension (%s): spatial queries use lat/lon ranges", exc.orig)
        return None
    return bind.execute(_INSTALLED).scalar_one()


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or (schema := _postgis_schema(bind)) is None:
        return
    s = bind.dialect.identifier_preparer.quote_schema(schema)
    op.execute(
        f"ALTER TABLE images ADD COLUMN geom {s}.geometry(Point, 4326)"
        f" GENERATED ALWAYS AS ({s}.ST_SetSRID({s}.ST_MakePoint(lon, lat), 4326)) STORED"
    )
    op.execute("CREATE INDEX ix_images_geom ON images USING gist (geom)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_images_geom")
        op.execute("ALTER TABLE images DROP COLUMN IF EXISTS geom")
