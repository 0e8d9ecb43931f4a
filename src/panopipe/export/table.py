"""What every export writes: a table of typed, documented columns with a WGS84 point (or line) per row.

A column keeps its type whether or not a survey has values in it, so a GIS reads the same schema from every
export (an empty ``pitch`` column is still a real number, not text). A time is aware, in UTC, or naive: a
camera's clock whose zone nobody knows (:func:`capture_time`), which no export labels UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

FieldType = Literal["text", "integer", "real", "boolean", "datetime", "line"]
"""``line``: the row's geometry, a list of ``(lon, lat)`` (tables of lines have no point). ``datetime``: see
:func:`capture_time`."""

WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],'
    'AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],'
    'UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AUTHORITY["EPSG","4326"]]'
)
"""EPSG:4326 (WGS84 longitude/latitude in degrees) as OGC WKT 1, the form ``.prj`` files hold. The
definition of EPSG:4326 does not change, so it is fixed text rather than asked of PROJ."""


def capture_time(moment: datetime | None, utc_offset_minutes: int | None) -> datetime | None:
    """A capture time as the catalog holds it (``captured_at``, aware) as every export writes it: in UTC when
    the camera's UTC offset is known; else naive, the camera's clock as it read, which the catalog keeps as if
    it were UTC (:class:`~panopipe.metadata.ImageMetadata`) and the published file writes without an offset."""
    if moment is None or utc_offset_minutes is not None:
        return moment
    return clock_reading(moment)


def clock_reading(moment: datetime) -> datetime:
    """What a clock shows at ``moment`` (of :func:`capture_time`), without a zone: a UTC clock for an aware
    time, the camera's for a naive one."""
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Column:
    """One column of an export: its name, type and what it holds (docs/exports.md lists them)."""

    name: str
    type: FieldType
    doc: str


@dataclass(frozen=True, slots=True)
class Table:
    """The values of ``columns`` (a list per column name, one value per row; ``None`` for no value), a layer
    called ``name`` whose point is (``x``, ``y``): the names of the longitude and latitude columns; or, when a
    column is of type ``line``, whose geometry is that line. Held column by column: writers convert and write
    a column at a time, without a dict per row."""

    name: str
    columns: tuple[Column, ...]
    values: Mapping[str, Sequence[Any]]
    x: str = "lon"
    y: str = "lat"

    @classmethod
    def of_rows(
        cls, name: str, columns: tuple[Column, ...], rows: Iterable[Mapping[str, Any]], **point: str
    ) -> Table:
        """The table of ``rows`` (dicts by column name; a missing key is no value)."""
        rows = list(rows)
        return cls(name, columns, {c.name: [row.get(c.name) for row in rows] for c in columns}, **point)

    def __len__(self) -> int:
        return len(self.values[self.columns[0].name]) if self.columns else 0

    def rows(self) -> Iterator[dict[str, Any]]:
        """Each row as a dict by column name."""
        names = self.names
        for values in zip(*(self.values[name] for name in names), strict=True):
            yield dict(zip(names, values, strict=True))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def line(self) -> str | None:
        """The name of the column that holds each row's line, if the table is one of lines."""
        return next((column.name for column in self.columns if column.type == "line"), None)


__all__ = ["WGS84_WKT", "Column", "FieldType", "Table", "capture_time", "clock_reading"]
