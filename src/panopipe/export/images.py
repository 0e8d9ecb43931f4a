"""The images export (``export --of images``): one row per catalogued image, its effective metadata.

The catalog's ``alt`` is EXIF GPSAltitude: metres above mean sea level (the geoid), not above the WGS84
ellipsoid, which differ by up to about 100 m. Exports therefore name it ``altitude_msl_m`` and a GeoJSON
point has no third coordinate, which RFC 7946 defines as height above the ellipsoid (docs/exports.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from panopipe.catalog.records import Image, to_json_value
from panopipe.export.table import Column, Table, capture_time

if TYPE_CHECKING:
    from panopipe.catalog import Catalog, Selection

ALTITUDE_DOC = "metres above mean sea level (EXIF GPSAltitude), not above the WGS84 ellipsoid"
ACCURACY_DOC = "horizontal accuracy of lat/lon, metres (EXIF GPSHPositioningError)"
CLOCK_DOC = "of unknown UTC offset, the camera clock as read, without a zone"
ORIENTATION_DOCS = {
    "heading": "degrees clockwise from true north (0-360)",
    "pitch": "degrees above the horizon (up positive)",
    "roll": "degrees, clockwise seen from behind the camera",
}
IMAGE_COLUMNS: tuple[Column, ...] = (
    Column("id", "text", "the catalog's image id"),
    Column("uri", "text", "where the captured file is: a local path or s3:// URI"),
    Column("captured_at", "datetime", f"capture time, UTC; {CLOCK_DOC} (utc_offset_minutes empty)"),
    Column(
        "utc_offset_minutes",
        "integer",
        "the UTC offset of the camera's local time, minutes; empty when nothing tells the clock's zone",
    ),
    Column("lat", "real", "latitude, WGS84 degrees"),
    Column("lon", "real", "longitude, WGS84 degrees"),
    Column("altitude_msl_m", "real", ALTITUDE_DOC),
    Column("gps_accuracy_m", "real", ACCURACY_DOC),
    *(Column(name, "real", doc) for name, doc in ORIENTATION_DOCS.items()),
    Column("make", "text", "camera make"),
    Column("model", "text", "camera model"),
    Column("camera_index", "integer", "the camera of the rig that took the frame"),
    Column("width", "integer", "pixels"),
    Column("height", "integer", "pixels"),
    Column("projection", "text", "equirectangular for a 360° image, else empty"),
    Column("reel", "text", "the reel (survey run)"),
    Column("frame", "integer", "the frame number within the reel"),
    Column("shot", "text", "the rig shot the frame belongs to"),
    Column("status", "text", "ok, or failed: the file could not be read"),
    Column("error", "text", "why the file could not be read (status failed), else empty"),
    Column("excluded", "boolean", "true when an edit left the image out of processing (qc --fix thinning)"),
    Column("route", "text", "the route `panopipe route locate` placed the image on"),
    Column("measure", "real", "the measure (milepost) along that route, in the route's unit"),
    Column("route_offset_m", "real", "metres from the route's line, positive to its right"),
    Column("flags", "text", "what `panopipe qc` found (docs/qc.md), names separated by ;"),
)
"""The columns of the images export, with their types."""

EXPORT_NAMES: dict[str, str] = {"alt": "altitude_msl_m"}
"""Listed fields under another name in the exports, which say what the value is."""

LISTED_FIELDS: tuple[str, ...] = tuple(
    {exported: listed for listed, exported in EXPORT_NAMES.items()}.get(c.name, c.name) for c in IMAGE_COLUMNS
)
"""The fields ``ls --json`` gives for each image (``alt``: metres above mean sea level; ``route``,
``measure``, ``route_offset_m``: where ``panopipe route locate`` put it; ``flags``: what ``panopipe qc`` found,
docs/qc.md)."""

EXPORTED_FIELDS: tuple[str, ...] = tuple(column.name for column in IMAGE_COLUMNS)
"""The columns of the CSV export and the properties of each GeoJSON feature."""


def image_row(image: Image) -> dict[str, Any]:
    """The listed fields of ``image`` as JSON-ready values."""
    return {name: to_json_value(getattr(image, name)) for name in LISTED_FIELDS}


def images_table(catalog: Catalog, selection: Selection | None = None) -> Table:
    """The images export of the selected images (:data:`EXPORTED_FIELDS`), in ``ls``'s order, times as
    :func:`~panopipe.export.table.capture_time` gives them; ``flags`` as one text, names separated by ``;``,
    which every GIS reads (none without a flag). Read column by column (:meth:`Catalog.columns`): no
    :class:`Image` is built, which took most of an export's time."""
    from panopipe.catalog.types import dashed  # SQLAlchemy's: not loaded by `ls --help` and the like

    columns = catalog.columns(selection, [name for name in LISTED_FIELDS if name != "flags"])
    ids = [dashed(digits) for digits in columns["id"]]
    columns["id"] = ids
    columns["captured_at"] = [
        None if t is None else capture_time(datetime.fromtimestamp(t, UTC), offset)
        for t, offset in zip(columns["captured_at"], columns["utc_offset_minutes"], strict=True)
    ]
    flags = catalog.flag_names(ids)
    columns["flags"] = [";".join(flags.get(image_id, ())) or None for image_id in ids]  # none: null
    return Table(
        "images", IMAGE_COLUMNS, {EXPORT_NAMES.get(name, name): values for name, values in columns.items()}
    )


__all__ = [
    "ACCURACY_DOC",
    "ALTITUDE_DOC",
    "CLOCK_DOC",
    "EXPORTED_FIELDS",
    "EXPORT_NAMES",
    "IMAGE_COLUMNS",
    "LISTED_FIELDS",
    "ORIENTATION_DOCS",
    "image_row",
    "images_table",
]
