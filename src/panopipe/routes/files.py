"""Reading a centerline from a file: GeoJSON (with the json module) or GeoPackage (with sqlite3 and shapely),
one line, with M values or a start measure. A line is an array of rows ``lon, lat`` and, when the file gives M
values, ``m``."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import re
import sqlite3
from pathlib import Path

import numpy as np

from panopipe.catalog.routes import UNITS, Route
from panopipe.errors import ConfigError
from panopipe.qc.geometry import shapely_module
from panopipe.sqlite_files import open_existing, quote_name


def _geojson_line(path: Path) -> np.ndarray:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it as GeoJSON ({exc})") from None
    if isinstance(document, dict) and document.get("type") == "FeatureCollection":
        features = document.get("features") or []
        if len(features) != 1:
            raise ConfigError(f"{path}: holds {len(features)} features; a route file holds one line")
        document = features[0]
    if isinstance(document, dict) and document.get("type") == "Feature":
        document = document.get("geometry")
    if not isinstance(document, dict) or "type" not in document:
        raise ConfigError(f"{path}: no GeoJSON geometry found; expected a LineString")
    kind = document["type"]
    if kind == "MultiLineString":
        parts = document.get("coordinates") or []
        if not isinstance(parts, list):
            raise ConfigError(f"{path}: the MultiLineString's coordinates are no list of lines")
    elif kind == "LineString":
        parts = [document.get("coordinates") or []]
    else:
        raise ConfigError(f"{path}: the geometry is a {kind}, not a line (LineString)")
    positions = [_positions(path, part) for part in parts]
    sizes = {len(position) for part in positions for position in part}
    if 4 in sizes and sizes != {4}:
        raise ConfigError(
            f"{path}: some positions have an M value (the 4th value) and others not: give it to all or none"
        )
    columns = [0, 1, 3] if sizes == {4} else [0, 1]
    return _merged(
        path,
        [np.array([[p[c] for c in columns] for p in part]).reshape(-1, len(columns)) for part in positions],
    )


def _positions(path: Path, positions: object) -> list[list[float]]:
    """GeoJSON positions as numbers: each a list of 2 to 4 finite numbers (lon, lat, and z and m)."""
    if not isinstance(positions, list):
        raise ConfigError(
            f"{path}: the line's coordinates are {json.dumps(positions)}, not a list of positions"
        )
    for number, position in enumerate(positions, start=1):
        if not (
            isinstance(position, list)
            and 2 <= len(position) <= 4
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in position)
            and all(math.isfinite(v) for v in position)
        ):
            raise ConfigError(
                f"{path}: position {number} of the line is {json.dumps(position)}: expected [lon, lat] in "
                "degrees, with z and m after them or not"
            )
    return [[float(value) for value in position] for position in positions]


def _merged(path: Path, parts: list[np.ndarray]) -> np.ndarray:
    """The one line that the parts of a (Multi)LineString join into, with their M values (a third column,
    in every part or none): one part as it is; several merged with shapely's ``line_merge``, in the
    direction of the first part, a part drawn the other way reversed with its M values."""
    if len(parts) <= 1:
        return parts[0] if parts else np.empty((0, 2))
    for number, part in enumerate(parts, start=1):
        if len(part) < 2:
            raise ConfigError(
                f"{path}: part {number} of the MultiLineString has {len(part)} position(s); a line needs at "
                "least 2"
            )
    shapely = shapely_module()
    measured = parts[0].shape[1] == 3
    # GEOS merges Z but drops M: the M values ride in Z through the merge.
    merged = shapely.line_merge(shapely.MultiLineString(parts))
    if merged.geom_type != "LineString":
        raise ConfigError(f"{path}: a MultiLineString of {len(parts)} parts that do not join into one line")
    line = shapely.get_coordinates(merged, include_z=measured)
    start, end = shapely.line_locate_point(merged, shapely.points(parts[0][[0, -1], :2]))
    if start > end:
        line = line[::-1]
    if measured:  # parts meeting where their M values differ keep one of them: refused
        kept = set(map(tuple, line.tolist()))
        for x, y, m in itertools.chain.from_iterable(part.tolist() for part in parts):
            if (x, y, m) not in kept:
                other = next(m2 for x2, y2, m2 in kept if (x2, y2) == (x, y))
                raise ConfigError(
                    f"{path}: parts of the MultiLineString meet at {x:.10g}, {y:.10g} with different M "
                    f"values ({m:g} and {other:g}): one line cannot keep both; give them one M value there"
                )
    return line


def _geopackage_line(path: Path) -> np.ndarray:
    """The one line of a GeoPackage, read with sqlite3 (a GeoPackage is a SQLite database; GDAL's readers
    drop M values) and shapely (its geometry is WKB after a short header), in WGS 84."""
    shapely = shapely_module()
    try:
        with contextlib.closing(open_existing(path)) as db:
            layers = db.execute(
                "SELECT table_name, column_name, srs_id FROM gpkg_geometry_columns"
            ).fetchall()
            if len(layers) != 1:
                raise ConfigError(f"{path}: holds {len(layers)} layers; a route file holds one line")
            table, column, srs_id = layers[0]
            query = f"SELECT {quote_name(column)} FROM {quote_name(table)}"
            blobs = [row[0] for row in db.execute(query) if row[0]]
            srs = db.execute(
                "SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys "
                "WHERE srs_id = ?",
                (srs_id,),
            ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path}: not a GeoPackage ({exc})") from None
    if len(blobs) != 1:
        raise ConfigError(f"{path}: holds {len(blobs)} features; a route file holds one line")
    blob = bytes(blobs[0])
    if blob[:2] != b"GP":
        raise ConfigError(f"{path}: its geometry is not a GeoPackage geometry")
    try:
        geometry = shapely.from_wkb(blob[8 + _ENVELOPE_BYTES.get((blob[3] >> 1) & 7, 0) :])
    except shapely.errors.GEOSException as exc:
        raise ConfigError(f"{path}: its geometry cannot be read ({exc})") from None
    if geometry.geom_type not in ("LineString", "MultiLineString"):
        raise ConfigError(f"{path}: the geometry is a {geometry.geom_type}, not a line (LineString)")
    parts = shapely.get_parts(geometry)
    line = _merged(path, [shapely.get_coordinates(part, include_m=geometry.has_m) for part in parts])
    if srs and srs[1] not in (0, -1):  # GeoPackage's undefined systems: taken as WGS 84
        organization, code, definition = srs
        line[:, 0], line[:, 1] = _to_wgs84(path, organization, code, definition, line[:, 0], line[:, 1])
    return line


_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}
"""Bytes of a GeoPackage geometry's envelope, by the envelope code in bits 1-3 of its flags byte."""


def _to_wgs84(
    path: Path, organization: str, code: int, definition: str, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``x``, ``y`` in a GeoPackage's CRS as longitudes and latitudes in WGS 84. The CRS is its authority's
    code when pyproj knows that authority, else its WKT definition (a custom CRS, organization ``NONE``)."""
    import pyproj

    named = f"{organization}:{code}"
    try:
        crs = pyproj.CRS.from_authority(organization, code)
    except (pyproj.exceptions.CRSError, TypeError):
        try:
            crs = pyproj.CRS.from_wkt(definition)
        except (pyproj.exceptions.CRSError, TypeError) as exc:
            raise ConfigError(f"{path}: cannot read its CRS {named} ({_first_line(exc)})") from None
    if crs.to_epsg() == 4326:
        return x, y
    try:
        transformer = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        lon, lat = transformer.transform(x, y, errcheck=True)
    except pyproj.exceptions.ProjError as exc:
        raise ConfigError(
            f"{path}: cannot reproject its CRS {named} to WGS 84 ({_first_line(exc)})"
        ) from None
    return np.asarray(lon), np.asarray(lat)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().partition("\n")[0]


_ROUTE_NAME = re.compile(r"\w[\w.-]{0,99}")
"""A route's name: a word of letters, digits, ``-``, ``_`` and ``.`` (``{route}`` in a publish template makes it
a folder or file name, so no ``/``, space, brace or leading dot)."""


def read_route(path: Path, name: str, *, start_measure: float | None = None, unit: str = "mi") -> Route:
    """The route ``name`` from the line in ``path``. Its measures are the positions' M values (the 4th value
    of a GeoJSON position, or a GeoPackage's M) or, without them, ``start_measure`` plus the geodesic length
    along the line, in ``unit`` (``mi`` or ``km``)."""
    if not _ROUTE_NAME.fullmatch(name):
        raise ConfigError(
            f"invalid route name {name!r}: give a name such as US-101: letters, digits, '-', '_' and '.', "
            "starting with a letter or digit, up to 100 (it names folders and files in publish templates)"
        )
    if unit not in UNITS:
        raise ConfigError(f"invalid --unit {unit!r}: expected {' or '.join(UNITS)}")
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        line = _geojson_line(path)
    elif suffix == ".gpkg":
        line = _geopackage_line(path)
    else:
        raise ConfigError(f"{path}: unknown route file type {suffix!r}: expected .geojson, .json or .gpkg")
    if len(line) < 2:
        raise ConfigError(f"{path}: the line has {len(line)} position(s); a route needs at least 2")
    coordinates = tuple((float(lon), float(lat)) for lon, lat in line[:, :2].tolist())
    for lon, lat in coordinates:
        if not (abs(lat) <= 90 and abs(lon) <= 180):
            raise ConfigError(f"{path}: position {lon}, {lat} is not longitude, latitude in degrees (WGS 84)")
    if len(set(coordinates)) == 1:
        raise ConfigError(f"{path}: the line has no length: its {len(line)} positions are one point")
    measures = tuple(line[:, 2].tolist()) if line.shape[1] == 3 else None
    if measures is None and start_measure is None:
        raise ConfigError(f"{path}: the line has no measures (M values): give --start-measure (and --unit)")
    if start_measure is not None and not math.isfinite(start_measure):
        raise ConfigError(f"invalid --start-measure {start_measure}: expected a finite number")
    if measures is not None:
        if start_measure is not None:
            raise ConfigError(
                f"{path}: the line has measures (M values): leave out --start-measure (the file's M values "
                "are the measures)"
            )
        steps = [b - a for a, b in itertools.pairwise(measures)]
        if not (all(s >= 0 for s in steps) or all(s <= 0 for s in steps)) or measures[0] == measures[-1]:
            raise ConfigError(f"{path}: the measures (M values) neither rise nor fall along the line")
    return Route(name, coordinates, measures, start_measure, unit, str(path))


__all__ = ["read_route"]
