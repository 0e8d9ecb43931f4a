"""PostGIS for ``--bbox`` and ``--near``: the generated point ``images.geom`` and its GiST index ``ix_images_geom``.

Migration 0004 adds them on PostgreSQL where the ``postgis`` extension is installed or can be created. They are
deliberately outside the SQLAlchemy model, which SQLite shares: :func:`include_object` keeps the
models-versus-migrations comparison from reporting them. Without them the same selections run on indexed
lat/lon ranges (see :meth:`~panopipe.catalog.selection.Selection.where`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

GEOM_COLUMN = "geom"
GEOM_INDEX = "ix_images_geom"
_GEOM: sa.ColumnClause[Any] = sa.literal_column(f"images.{GEOM_COLUMN}")
# PostGIS's sphere (the WGS 84 mean radius, 6 371 008.77 m) is 4.5e-9 smaller than panopipe.geo's; the slack
# keeps ST_DWithin a superset of the haversine test that decides on every backend.
_DISTANCE_SLACK = 1e-6


@dataclass(frozen=True, slots=True)
class PostGIS:
    """Spatial conditions on ``images.geom``, with PostGIS's functions and operators taken from ``schema``."""

    schema: str

    def _func(self, name: str) -> Any:
        return getattr(getattr(sa.func, self.schema), name)

    def in_box(self, box: tuple[float, float, float, float]) -> sa.ColumnElement[bool]:
        """Points in the box ``(min_lon, min_lat, max_lon, max_lat)``, through the GiST index.

        The index compares single-precision boxes rounded outwards, so points up to about a metre outside pass:
        callers add the exact lat/lon ranges.
        """
        envelope = self._func("ST_MakeEnvelope")(*(float(value) for value in box), 4326)
        quoted = '"' + self.schema.replace('"', '""') + '"'
        return _GEOM.op(f"OPERATOR({quoted}.&&)", is_comparison=True)(envelope)

    def within_m(self, lat: float, lon: float, radius_m: float) -> sa.ColumnElement[bool]:
        """Points within about ``radius_m`` metres of a point on the sphere (a superset of the haversine test)."""
        geography = self._func("geography")
        point = geography(self._func("ST_MakePoint")(float(lon), float(lat)))
        radius = float(radius_m) * (1 + _DISTANCE_SLACK)
        return self._func("ST_DWithin")(geography(_GEOM), point, radius, False)


def detect_postgis(conn: sa.Connection) -> PostGIS | None:
    """PostGIS conditions when the catalog's ``images`` table has the ``geom`` column, else ``None``."""
    if conn.dialect.name != "postgresql":
        return None
    schema = conn.execute(
        sa.text(
            "SELECT n.nspname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
            " JOIN pg_namespace n ON n.oid = t.typnamespace"
            " WHERE a.attrelid = to_regclass('images') AND a.attname = :column AND NOT a.attisdropped"
        ),
        {"column": GEOM_COLUMN},
    ).scalar_one_or_none()
    return None if schema is None else PostGIS(schema)


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's filter: leave out the PostGIS column and index, which exist in the database only, and the
    indexes on expressions as the database reflects them (tests check that lookups use them)."""
    from panopipe.catalog.schema import EXPRESSION_INDEXES

    only_here = {("column", GEOM_COLUMN), ("index", GEOM_INDEX), *(("index", n) for n in EXPRESSION_INDEXES)}
    return not (reflected and compare_to is None and (type_, name) in only_here)


__all__ = ["GEOM_COLUMN", "GEOM_INDEX", "PostGIS", "detect_postgis", "include_object"]
