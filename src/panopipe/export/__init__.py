"""Exports for the tools survey teams use: CSV, GeoJSON and GeoPackage for QGIS and ArcGIS, and ArcGIS's
Oriented Imagery table.

``export --of images`` lists the catalogued images (:mod:`~panopipe.export.images`), ``--of panoramas`` the
shots and 360° images with what the pipeline produced (:mod:`~panopipe.export.panoramas`), ``--of sequences``
a line per run of capture (:mod:`~panopipe.export.sequences`), ``--format oid``
the Oriented Imagery table (:mod:`~panopipe.export.oid`); :mod:`~panopipe.export.formats` writes them.
Heights are metres above mean sea level and are named so (docs/exports.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from panopipe.export.images import (
    EXPORT_NAMES,
    EXPORTED_FIELDS,
    IMAGE_COLUMNS,
    LISTED_FIELDS,
    image_row,
    images_table,
)
from panopipe.export.table import WGS84_WKT, Column, Table
from panopipe.lazy import lazy_attributes

# Names load their module on first use (PEP 562): ``ls`` and ``show`` list images without loading the job
# store and the steps that the panoramas export reads.
_MODULES = {
    "FORMATS": "exporter",
    "ExportOptions": "exporter",
    "ExportResult": "exporter",
    "OID_COLUMNS": "oid",
    "PANORAMA_COLUMNS": "panoramas",
    "SEQUENCE_COLUMNS": "sequences",
    "Panorama": "panoramas",
    "SUBJECTS": "exporter",
    "esri_heading": "oid",
    "esri_pitch": "oid",
    "load_panoramas": "panoramas",
    "load_sequences": "sequences",
    "oid_table": "oid",
    "panoramas_table": "panoramas",
    "sequences_table": "sequences",
    "csv_sidecars": "formats",
    "write_csv": "formats",
    "write_csv_sidecars": "formats",
    "write_export": "exporter",
    "write_geojson": "formats",
    "write_gpkg": "formats",
}

if TYPE_CHECKING:
    from panopipe.export.exporter import FORMATS, SUBJECTS, ExportOptions, ExportResult, write_export
    from panopipe.export.formats import csv_sidecars, write_csv, write_csv_sidecars, write_geojson, write_gpkg
    from panopipe.export.oid import OID_COLUMNS, esri_heading, esri_pitch, oid_table
    from panopipe.export.panoramas import PANORAMA_COLUMNS, Panorama, load_panoramas, panoramas_table
    from panopipe.export.sequences import SEQUENCE_COLUMNS, load_sequences, sequences_table

__getattr__ = lazy_attributes(__name__, _MODULES)

__all__ = [
    "EXPORTED_FIELDS",
    "EXPORT_NAMES",
    "FORMATS",
    "IMAGE_COLUMNS",
    "LISTED_FIELDS",
    "OID_COLUMNS",
    "PANORAMA_COLUMNS",
    "SEQUENCE_COLUMNS",
    "SUBJECTS",
    "WGS84_WKT",
    "Column",
    "ExportOptions",
    "ExportResult",
    "Panorama",
    "Table",
    "csv_sidecars",
    "esri_heading",
    "esri_pitch",
    "image_row",
    "images_table",
    "load_panoramas",
    "load_sequences",
    "oid_table",
    "panoramas_table",
    "sequences_table",
    "write_csv",
    "write_csv_sidecars",
    "write_export",
    "write_geojson",
    "write_gpkg",
]
