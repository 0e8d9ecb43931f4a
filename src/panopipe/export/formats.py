"""The file formats of the exports: CSV (with ``.csvt`` and ``.prj`` sidecars), GeoJSON and GeoPackage; points,
or lines (a table with a ``line`` column: WKT in a CSV).

Each writer takes a :class:`~panopipe.export.table.Table` and writes its rows in order. A CSV written to a
file gets two sidecars that GDAL (and so QGIS's "Add Vector Layer") reads: ``.csvt``, the type of each column
(``CoordX``/``CoordY`` for the longitude and latitude, so the rows open as points; ``WKT`` for a line), and
``.prj``, the CRS (EPSG:4326). The GeoPackage is written with pyogrio (the ``gis`` extra) with explicit field
types.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, TextIO

from panopipe.catalog.records import to_json_value
from panopipe.errors import ConfigError, StorageError
from panopipe.export.table import WGS84_WKT, FieldType, Table, clock_reading
from panopipe.storage import open_atomic, replaced_file, write_atomic

_CSVT: dict[FieldType, str] = {
    "text": "String",
    "integer": "Integer64",
    "real": "Real",
    "boolean": "Integer(Boolean)",
    "datetime": "DateTime",
    "line": "WKT",
}
GIS_EXTRA = "pip install 'panopipe[gis]'"


def iso_time(moment: datetime) -> str:
    """``moment`` as ISO 8601, as ``ls --json`` shows times: in UTC ending in ``Z``, or a clock of unknown zone
    (naive, :func:`~panopipe.export.table.capture_time`) without one."""
    return str(to_json_value(moment))


def write_csv(table: Table, out: TextIO, time_text: Callable[[datetime], str] = iso_time) -> int:
    """One row per record under a header of the column names; no value is an empty cell, times are
    ``time_text`` of them, booleans ``true`` or ``false`` (as JSON writes them, and GDAL reads them with the
    ``.csvt``). The number of rows."""
    import csv

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.names)
    # Column by column, each value as its cell: times as time_text, lines as WKT, no value as an empty cell.
    texts: dict[FieldType, Callable[[Any], str]] = {"datetime": time_text, "line": _wkt, "boolean": _boolean}
    cells: list[Sequence[Any]] = []
    for column in table.columns:
        values, text = table.values[column.name], texts.get(column.type)
        if text is not None:
            cells.append(["" if value is None else text(value) for value in values])
        elif None in values:
            cells.append(["" if value is None else value for value in values])
        else:
            cells.append(values)
    writer.writerows(zip(*cells, strict=True))
    return len(table)


def _boolean(value: bool) -> str:
    return "true" if value else "false"


def _wkt(points: Sequence[tuple[float, float]]) -> str:
    return f"LINESTRING ({', '.join(f'{x!r} {y!r}' for x, y in points)})"


def csv_sidecars(path: Path) -> list[Path]:
    """The ``.csvt`` and ``.prj`` sidecars of the CSV file ``path``; none when ``path`` is no file but a device
    or FIFO (``/dev/stdout``): a stream has nothing beside it."""
    if replaced_file(path) is None:
        return []
    return [path.with_suffix(".csvt"), path.with_suffix(".prj")]


def write_csv_sidecars(table: Table, sidecars: Sequence[Path]) -> None:
    """Write the :func:`csv_sidecars` of a CSV of ``table``: the ``.csvt`` (column types, the point's columns
    as ``CoordX``/``CoordY``) and the ``.prj`` (EPSG:4326)."""
    types = [
        "CoordX" if c.name == table.x else "CoordY" if c.name == table.y else _CSVT[c.type]
        for c in table.columns
    ]
    texts = {".csvt": ",".join(f'"{t}"' for t in types), ".prj": WGS84_WKT}
    for sidecar in sidecars:
        write_atomic(sidecar, (texts[sidecar.suffix] + "\n").encode())


def write_geojson(table: Table, out: TextIO) -> int:
    """An RFC 7946 FeatureCollection of points ``[lon, lat]`` (or lines) with every other column as a property
    (times as :func:`iso_time`); rows without a position are left out. The number of features."""
    out.write('{"type": "FeatureCollection", "features": [\n')
    line = table.line
    properties = [name for name in table.names if name != line]
    count = 0
    for row in table.rows():
        geometry = _geometry(row, line, table.x, table.y)
        if geometry is None:
            continue
        feature = {
            "type": "Feature",
            "id": row.get(table.names[0]),
            "geometry": geometry,
            "properties": {name: to_json_value(row.get(name)) for name in properties},
        }
        out.write((",\n" if count else "") + json.dumps(feature, ensure_ascii=False))
        count += 1
    out.write("\n]}\n")
    return count


def _geometry(row: Mapping[str, Any], line: str | None, x: str, y: str) -> dict[str, Any] | None:
    """The GeoJSON geometry of ``row``: its ``line`` column's line, else its point (``x``, ``y``); ``None``
    without a position."""
    if line is not None:
        points = row.get(line)
        if not points:
            return None
        parts = _cut_at_antimeridian(points)
        if len(parts) == 1:
            return {"type": "LineString", "coordinates": parts[0]}
        return {"type": "MultiLineString", "coordinates": parts}
    lon, lat = row.get(x), row.get(y)
    return None if lon is None or lat is None else {"type": "Point", "coordinates": [lon, lat]}


def _cut_at_antimeridian(points: Sequence[tuple[float, float]]) -> list[list[list[float]]]:
    """The line through ``points`` cut where it crosses the antimeridian (a step of more than 180° of
    longitude), as RFC 7946 asks: each part ends, and the next starts, at ±180 at the latitude where the
    straight line between the two points (in longitude and latitude) meets it."""
    parts = [[list(points[0])]]
    for (lon1, lat1), (lon2, lat2) in pairwise(points):
        if abs(lon2 - lon1) > 180:
            edge = 180.0 if lon1 > 0 else -180.0  # the side of the first point
            unwrapped = lon2 + 360 if lon1 > 0 else lon2 - 360
            lat = lat1 + (edge - lon1) / (unwrapped - lon1) * (lat2 - lat1)
            parts[-1].append([edge, lat])
            parts.append([[-edge, lat]])
        parts[-1].append([lon2, lat2])
    return parts


def write_gpkg(table: Table, path: Path) -> int:
    """A point (or line) layer named after the table in the GeoPackage at ``path``, EPSG:4326, each column typed
    as declared whether or not it has values; rows without a position have no geometry. A GeoPackage already
    there keeps its other layers and tables (a user's, QGIS's ``layer_styles``, a project stored in it) and gets
    the layer in place of its own of that name; no file, or an empty one, is a new GeoPackage. The number of
    features. :class:`ConfigError` when pyogrio (the ``gis`` extra) is not installed, or ``path`` is a file that
    is no GeoPackage (which the export cannot tell is its own to replace); :class:`StorageError` when another
    program holds its write lock for more than 5 s."""
    try:
        import numpy as np
        import pyogrio.raw
    except ImportError:
        raise ConfigError(f"writing a GeoPackage needs pyogrio: {GIS_EXTRA}") from None

    line = table.line
    if line:
        wkb = [_line_wkb(points) for points in table.values[line]]
    else:
        wkb = list(map(_point_wkb, table.values[table.x], table.values[table.y]))
    geometry = np.array(wkb, dtype=object)
    fields = [column for column in table.columns if column.name != line]
    data: list[Any] = []
    masks: list[Any] = []
    zones: dict[str, Any] = {}  # GDAL's time zone flag per value: 100 is UTC, 0 unknown (a camera's clock)
    for column in fields:
        values = table.values[column.name]
        missing = np.array([value is None for value in values], dtype=bool)
        if column.type == "real":
            data.append(np.array([np.nan if v is None else v for v in values], dtype=np.float64))
        elif column.type == "integer":
            data.append(np.array([0 if v is None else v for v in values], dtype=np.int64))
        elif column.type == "boolean":
            data.append(np.array([bool(v) for v in values], dtype=np.bool_))
        elif column.type == "datetime":
            data.append(np.array([None if v is None else clock_reading(v) for v in values], "datetime64[ms]"))
            zones[column.name] = np.array(
                [0 if v is None or v.tzinfo is None else 100 for v in values], np.int32
            )
        else:
            data.append(np.array(values, dtype=object))
        masks.append(missing)
    # written in a temporary folder beside it (into a copy of the GeoPackage there), then put in its place: a
    # failed export leaves the previous file as it was
    target = replaced_file(path)  # a link's file; none for a device or FIFO, which gets a copy
    with tempfile.TemporaryDirectory(prefix=".panopipe-tmp-", dir=target and target.parent) as folder:
        written = Path(folder) / f"{path.stem}.gpkg"  # GDAL warns of another extension
        update = target is not None and _copy_geopackage(target, written, path)
        pyogrio.raw.write(  # into a GeoPackage there, in place of the layer of its name
            str(written),
            geometry,
            data,
            [column.name for column in fields],
            field_mask=masks,
            layer=table.name,
            driver="GPKG",
            geometry_type="LineString" if line else "Point",
            crs=WGS84_WKT,
            gdal_tz_offsets=zones,
            # GeoPackage 1.2: GDAL before 3.7 (Debian 12, QGIS LTR builds) warns that it only partly supports 1.4.
            dataset_options={"VERSION": "1.2"},
        )
        if target is None:
            with written.open("rb") as source, open_atomic(path) as stream:
                shutil.copyfileobj(source, stream)
        elif update:
            _copy_into(written, target, path)
        else:
            os.replace(written, target)
    return len(table)


def geopackage_layers(path: Path) -> list[str]:
    """The names of the layers of the GeoPackage at ``path``: its ``gpkg_contents``, which GDAL (and so QGIS)
    lists."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [name for (name,) in db.execute("SELECT table_name FROM gpkg_contents ORDER BY table_name")]


def _copy_geopackage(target: Path, copy: Path, path: Path) -> bool:
    """Copy the GeoPackage at ``target`` (written as ``path``) to ``copy``; ``False`` for no file or an empty
    one, which holds nothing to keep. :class:`ConfigError` for any other file: a text, another SQLite database
    or a damaged GeoPackage may hold what the export cannot tell, and is not replaced (as a CSV export leaves a
    ``.prj`` that is not its own sidecar)."""
    try:
        if target.stat().st_size == 0:
            return False
    except FileNotFoundError:
        return False
    try:
        with contextlib.closing(sqlite3.connect(target)) as source:
            tables = {
                name for (name,) in source.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            missing = sorted({"gpkg_contents", "gpkg_spatial_ref_sys"} - tables)  # GDAL opens none without
            reason = f"no {' or '.join(missing)} table" if missing else None
            if reason is None:
                with contextlib.closing(sqlite3.connect(copy)) as destination:
                    source.backup(destination)  # what a program that has it open keeps in its WAL as well
    except sqlite3.DatabaseError as error:
        reason = str(error)
    if reason is not None:
        raise ConfigError(
            f"cannot write {path}: it is not a GeoPackage ({reason}); give the export another name, or remove "
            "that file"
        )
    return True


def _copy_into(geopackage: Path, target: Path, path: Path) -> None:
    """Write ``geopackage`` over the GeoPackage at ``target`` (written as ``path``) in one SQLite transaction:
    a program that has it open (QGIS keeps it so, in WAL mode) reads the old one or the new, and its
    write-ahead log stays the file's; a failure leaves it as it was. A file renamed over it would be read
    through the log of the one it replaced: a malformed database."""

    def give_up_if_locked(status: int, remaining: int, pages: int) -> None:
        # after SQLite's own wait (the connection's 5 s): Python's backup would try again for ever
        if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise StorageError(
                f"cannot write {path}: another program is writing to it (QGIS saving edits?); export again "
                "when it is done"
            )

    try:
        with (
            contextlib.closing(sqlite3.connect(geopackage)) as source,
            contextlib.closing(sqlite3.connect(target)) as destination,
        ):
            source.backup(destination, progress=give_up_if_locked)
    except sqlite3.Error as error:
        raise StorageError(f"cannot write {path}: {error}") from None


def _point_wkb(x: float | None, y: float | None) -> bytes | None:
    """A 2D point as little-endian WKB, or ``None`` without a position."""
    if x is None or y is None:
        return None
    return struct.pack("<BIdd", 1, 1, x, y)


def _line_wkb(points: Sequence[tuple[float, float]] | None) -> bytes | None:
    """A 2D line string as little-endian WKB, or ``None`` without points."""
    if not points:
        return None
    return struct.pack(f"<BII{2 * len(points)}d", 1, 2, len(points), *(v for point in points for v in point))


__all__ = [
    "GIS_EXTRA",
    "csv_sidecars",
    "geopackage_layers",
    "iso_time",
    "write_csv",
    "write_csv_sidecars",
    "write_geojson",
    "write_gpkg",
]
