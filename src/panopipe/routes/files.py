"""Reading a centerline from a file: GeoJSON (with the json module) or GeoPackage (with sqlite3 and shapely),
one LineString, with M values or a start measure."""

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


def _geojson_line(path: Path) -> list[list[float]]:
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
        return _merged(path, [_positions(path, part) for part in parts])
    if kind != "LineString":
        raise ConfigError(f"{path}: the geometry is a {kind}, not a line (LineString)")
    return _positions(path, document.get("coordinates") or [])


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


def _merged(path: Path, parts: list[list[list[float]]]) -> list[list[float]]:
    """The one line that the parts of a MultiLineString join into (shapely's line_merge)."""
    shapely = shapely_module()
    if len(parts) == 1:
        return parts[0]
    merged = shapely.line_merge(shapely.MultiLineString([[p[:2] for p in part] for part in parts]))
    if merged.geom_type != "LineString":
        raise ConfigError(f"{path}: a MultiLineString of {len(parts)} parts that do not join into one line")
    return [list(p) for p in shapely.get_coordinates(merged)]


_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}
"""Bytes of a GeoPackage geometry's envelope, by the envelope code in bits 1-3 of its flags byte."""


def _geopackage_line(path: Path) -> list[list[float]]:
    """The one line of a GeoPackage, read with sqlite3 (a GeoPackage is a SQLite database; GDAL's readers
    drop M values) and shapely (its geometry is WKB after a short header), in WGS 84."""
    import pyproj

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
            crs = db.execute(
                "SELECT organization, organization_coordsys_id FROM gpkg_spatial_ref_sys WHERE srs_id = ?",
                (srs_id,),
            ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path}: not a GeoPackage ({exc})") from None
    if len(blobs) != 1:
        raise ConfigError(f"{path}: holds {len(blobs)} features; a route file holds one line")
    blob = bytes(blobs[0])
    if blob[:2] != b"GP":
        raise ConfigError(f"{path}: its geometry is not a GeoPackage geometry")
    line = shapely.from_wkb(blob[8 + _ENVELOPE_BYTES.get((blob[3] >> 1) & 7, 0) :])
    if line.geom_type == "MultiLineString":
        line = shapely.line_merge(line)
    if line.geom_type != "LineString":
        raise ConfigError(f"{path}: the geometry is a {line.geom_type}, not a line (LineString)")
    coordinates = shapely.get_coordinates(line, include_z=line.has_z, include_m=line.has_m)
    if line.has_m and not line.has_z:  # keep M as the 4th value, as in GeoJSON positions
        coordinates = np.insert(coordinates, 2, 0.0, axis=1)
    if crs and crs[1] not in (4326, 0, -1):
        transformer = pyproj.Transformer.from_crs(f"{crs[0]}:{crs[1]}", "EPSG:4326", always_xy=True)
        coordinates[:, 0], coordinates[:, 1] = transformer.transform(coordinates[:, 0], coordinates[:, 1])
    return [list(map(float, row)) for row in coordinates]


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
        positions = _geojson_line(path)
    elif suffix == ".gpkg":
        positions = _geopackage_line(path)
    else:
        raise ConfigError(f"{path}: unknown route file type {suffix!r}: expected .geojson, .json or .gpkg")
    if len(positions) < 2:
        raise ConfigError(f"{path}: the line has {len(positions)} position(s); a route needs at least 2")
    for lon, lat, *_ in positions:
        if not (abs(lat) <= 90 and abs(lon) <= 180):
            raise ConfigError(f"{path}: position {lon}, {lat} is not longitude, latitude in degrees (WGS 84)")
    if len({(p[0], p[1]) for p in positions}) == 1:
        raise ConfigError(f"{path}: the line has no length: its {len(positions)} positions are one point")
    measures = tuple(p[3] for p in positions) if all(len(p) >= 4 for p in positions) else None
    if measures is None and start_measure is None:
        raise ConfigError(f"{path}: the line has no measures (M values): give --start-measure (and --unit)")
    if measures is not None:
        if start_measure is not None:
            raise ConfigError(f"{path}: the line has measures (M values): leave out --start-measure")
        steps = [b - a for a, b in itertools.pairwise(measures)]
        if not (all(s >= 0 for s in steps) or all(s <= 0 for s in steps)) or measures[0] == measures[-1]:
            raise ConfigError(f"{path}: the measures (M values) neither rise nor fall along the line")
    coordinates = tuple((p[0], p[1]) for p in positions)
    return Route(name, coordinates, measures, start_measure, unit, str(path))


__all__ = ["read_route"]
