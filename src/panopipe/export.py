"""Export effective metadata as CSV or GeoJSON that QGIS and ArcGIS open directly.

The catalog's ``alt`` is EXIF GPSAltitude: metres above mean sea level (the geoid), not above the WGS84
ellipsoid, which differ by up to about 100 m. Exports therefore name it ``altitude_msl_m`` and a GeoJSON
point has no third coordinate, which RFC 7946 defines as height above the ellipsoid (docs/exports.md).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, TextIO

from panopipe.catalog.records import Image, to_json_value

LISTED_FIELDS: tuple[str, ...] = (
    "id",
    "uri",
    "captured_at",
    "lat",
    "lon",
    "alt",
    "heading",
    "pitch",
    "roll",
    "make",
    "model",
    "camera_index",
    "width",
    "height",
    "projection",
    "reel",
    "frame",
    "shot",
    "status",
    "route",
    "measure",
    "route_offset_m",
    "flags",
)
"""The fields ``ls --json`` gives for each image (``alt``: metres above mean sea level; ``route``,
``measure``, ``route_offset_m``: where ``panopipe route locate`` put it; ``flags``: what ``panopipe qc`` found,
docs/qc.md)."""

EXPORT_NAMES: dict[str, str] = {"alt": "altitude_msl_m"}
"""Listed fields under another name in the exports, which say what the value is."""

EXPORTED_FIELDS: tuple[str, ...] = tuple(EXPORT_NAMES.get(name, name) for name in LISTED_FIELDS)
"""The columns of the CSV export and the properties of each GeoJSON feature."""


def image_row(image: Image) -> dict[str, Any]:
    """The listed fields of ``image`` as JSON-ready values."""
    return {name: to_json_value(getattr(image, name)) for name in LISTED_FIELDS}


def export_row(image: Image) -> dict[str, Any]:
    """The exported fields of ``image`` (:data:`EXPORTED_FIELDS`) as JSON-ready values; ``flags`` as one text,
    names separated by ``;``, which every GIS reads."""
    row = {EXPORT_NAMES.get(name, name): value for name, value in image_row(image).items()}
    row["flags"] = ";".join(image.flags)
    return row


def write_csv(images: Iterable[Image], out: TextIO) -> int:
    """One row per image with ``lat``/``lon`` columns (QGIS detects them; ArcGIS: XY Table To Point) and the
    altitude above mean sea level in ``altitude_msl_m``."""
    writer = csv.DictWriter(out, fieldnames=EXPORTED_FIELDS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for image in images:
        writer.writerow(export_row(image))
        count += 1
    return count


def write_geojson(images: Iterable[Image], out: TextIO) -> int:
    """An RFC 7946 FeatureCollection of points ``[lon, lat]``, the altitude above mean sea level in the
    ``altitude_msl_m`` property (not a third coordinate: that is height above the ellipsoid); images without
    a position are left out."""
    out.write('{"type": "FeatureCollection", "features": [\n')
    count = 0
    for image in images:
        if image.lat is None or image.lon is None:
            continue
        feature = {
            "type": "Feature",
            "id": image.id,
            "geometry": {"type": "Point", "coordinates": [image.lon, image.lat]},
            "properties": export_row(image),
        }
        out.write((",\n" if count else "") + json.dumps(feature, ensure_ascii=False))
        count += 1
    out.write("\n]}\n")
    return count


__all__ = [
    "EXPORTED_FIELDS",
    "EXPORT_NAMES",
    "LISTED_FIELDS",
    "export_row",
    "image_row",
    "write_csv",
    "write_geojson",
]
