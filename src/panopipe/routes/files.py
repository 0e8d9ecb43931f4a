"""Reading a centerline from a file: GeoJSON (with the json module) or GeoPackage (with pyogrio, if installed),
one LineString, with M values or a start measure."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from panopipe.catalog.routes import UNITS, Route
from panopipe.errors import ConfigError
from panopipe.qc.geometry import shapely_module


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
        return _merged(path, document.get("coordinates") or [])
    if kind != "LineString":
        raise ConfigError(f"{path}: the geometry is a {kind}, not a line (LineString)")
    return [list(map(float, position)) for position in document.get("coordinates") or []]


def _merged(path: Path, parts: list[list[list[float]]]) -> list[list[float]]:
    """The one line that the parts of a MultiLineString join into (shapely's line_merge)."""
    shapely = shapely_module()
    if len(parts) == 1:
        return [list(map(float, p)) for p in parts[0]]
    merged = shapely.line_merge(shapely.MultiLineString([[p[:2] for p in part] for part in parts]))
    if merged.geom_type != "LineString":
        raise ConfigError(f"{path}: a MultiLineString of {len(parts)} parts that do not join into one line")
    return [list(p) for p in shapely.get_coordinates(merged)]


def _geopackage_line(path: Path) -> list[list[float]]:
    try:
        import pyogrio
    except ImportError:
        raise ConfigError(
            f"reading a GeoPackage needs pyogrio: pip install pyogrio (or convert it: "
            f"ogr2ogr -f GeoJSON route.geojson {path})"
        ) from None
    import pyproj

    shapely = shapely_module()
    meta, _, geometry, _ = pyogrio.raw.read(path)
    if geometry is None or len(geometry) != 1:
        count = 0 if geometry is None else len(geometry)
        raise ConfigError(f"{path}: holds {count} features; a route file holds one line")
    line = shapely.from_wkb(geometry[0])
    if line.geom_type == "MultiLineString":
        line = shapely.line_merge(line)
    if line.geom_type != "LineString":
        raise ConfigError(f"{path}: the geometry is a {line.geom_type}, not a line (LineString)")
    coordinates = shapely.get_coordinates(line, include_z=line.has_z, include_m=line.has_m)
    if meta.get("crs") and pyproj.CRS.from_user_input(meta["crs"]) != pyproj.CRS.from_epsg(4326):
        transformer = pyproj.Transformer.from_crs(meta["crs"], "EPSG:4326", always_xy=True)
        coordinates[:, 0], coordinates[:, 1] = transformer.transform(coordinates[:, 0], coordinates[:, 1])
    return [list(map(float, row)) for row in coordinates]


def read_route(path: Path, name: str, *, start_measure: float | None = None, unit: str = "mi") -> Route:
    """The route ``name`` from the line in ``path``. Its measures are the positions' M values (the 4th value
    of a GeoJSON position, or a GeoPackage's M) or, without them, ``start_measure`` plus the geodesic length
    along the line, in ``unit`` (``mi`` or ``km``)."""
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
    measures = tuple(p[3] for p in positions) if all(len(p) >= 4 for p in positions) else None
    if measures is None and start_measure is None:
        raise ConfigError(f"{path}: the line has no measures (M values): give --start-measure (and --unit)")
    if measures is not None:
        if start_measure is not None:
            raise ConfigError(f"{path}: the line has measures (M values): leave out --start-measure")
        steps = [b - a for a, b in itertools.pairwise(measures)]
        if not (all(s >= 0 for s in steps) or all(s <= 0 for s in steps)):
            raise ConfigError(f"{path}: the measures (M values) neither rise nor fall along the line")
    coordinates = tuple((p[0], p[1]) for p in positions)
    return Route(name, coordinates, measures, start_measure, unit, str(path))


__all__ = ["read_route"]
