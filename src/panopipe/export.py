"""Export effective metadata as CSV or GeoJSON that QGIS and ArcGIS open directly."""

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
)
"""The fields ``ls --json`` and the exports give for each image."""


def image_row(image: Image) -> dict[str, Any]:
    """The listed fields of ``image`` as JSON-ready values."""
    return {name: to_json_value(getattr(image, name)) for name in LISTED_FIELDS}


def write_csv(images: Iterable[Image], out: TextIO) -> int:
    """One row per image with ``lat``/``lon`` columns (QGIS detects them; ArcGIS: XY Table To Point)."""
    writer = csv.DictWriter(out, fieldnames=LISTED_FIELDS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for image in images:
        writer.writerow(image_row(image))
        count += 1
    return count


def write_geojson(images: Iterable[Image], out: TextIO) -> int:
    """An RFC 7946 FeatureCollection of points ``[lon, lat(, alt)]``; images without a position are left out."""
    out.write('{"type": "FeatureCollection", "features": [\n')
    count = 0
    for image in images:
        if image.lat is None or image.lon is None:
            continue
        coordinates = [image.lon, image.lat] + ([image.alt] if image.alt is not None else [])
        feature = {
            "type": "Feature",
            "id": image.id,
            "geometry": {"type": "Point", "coordinates": coordinates},
            "properties": image_row(image),
        }
        out.write((",\n" if count else "") + json.dumps(feature, ensure_ascii=False))
        count += 1
    out.write("\n]}\n")
    return count


__all__ = ["LISTED_FIELDS", "image_row", "write_csv", "write_geojson"]
