"""Reading a few fields of many images column by column, for bulk work (``panopipe qc`` over 100,000 frames).

SQLAlchemy converts every value a column type processes (a UUID object per id, a parsed ``datetime`` per
timestamp), which costs more than the query itself. Here the database returns those values ready to use: ids
as their 32 hex digits (the UUID without dashes) and timestamps as POSIX seconds, so rows arrive as plain tuples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from panopipe.catalog.records import IMAGE_COLUMNS
from panopipe.catalog.schema import images
from panopipe.catalog.selection import Selection, sort_order
from panopipe.catalog.spatial import PostGIS
from panopipe.catalog.types import UTCDateTime, uuid_hex
from panopipe.errors import CatalogError


def _seconds(column: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[float]:
    if dialect == "postgresql":
        return sa.cast(sa.extract("epoch", column), sa.Double)  # naive UTC: seconds since the epoch as stored
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff': whole seconds from strftime, the fraction from the text
    # (strftime is given the whole seconds only: it rounds a fraction to milliseconds, .9996 to the next second).
    whole = sa.cast(sa.func.strftime("%s", sa.func.substr(column, 1, 19)), sa.Double)
    return whole + sa.cast(sa.func.substr(column, 20), sa.Double)


def _plain(name: str, dialect: str) -> sa.ColumnElement[Any]:
    column = images.c[name]
    if isinstance(column.type, sa.Uuid):
        return uuid_hex(column, dialect).label(name)
    if isinstance(column.type, UTCDateTime):
        return _seconds(column, dialect).label(name)
    return column


def read_columns(
    conn: sa.Connection,
    selection: Selection,
    fields: Sequence[str],
    *,
    sort: Sequence[str] = (),
    postgis: PostGIS | None = None,
) -> dict[str, list[Any]]:
    """``fields`` of the images ``selection`` holds, ordered as ``sort`` (see
    :func:`~panopipe.catalog.selection.sort_order`), as one list per field: ids as their 32 hex digits
    (:func:`~panopipe.catalog.types.dashed` gives the canonical text), timestamps as POSIX seconds (float),
    missing values as ``None``."""
    for name in fields:
        if name not in IMAGE_COLUMNS:
            raise CatalogError(f"images have no field {name!r}")
    dialect = conn.dialect.name
    wanted = list(dict.fromkeys([*fields, "lat", "lon"])) if selection.near else list(fields)
    query = (
        sa.select(*(_plain(name, dialect) for name in wanted))
        .where(*selection.where(postgis))
        .order_by(*sort_order(sort))
    )
    rows = conn.execute(query).all()
    if selection.near:
        rows = [row for row in rows if selection.matches(row)]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in wanted]
    return {name: list(columns[wanted.index(name)]) for name in fields}


__all__ = ["read_columns"]
