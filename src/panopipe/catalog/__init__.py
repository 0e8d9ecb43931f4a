"""The metadata catalog: images, non-destructive edits, artifacts and jobs, on SQLite or PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from panopipe.lazy import lazy_attributes

# Names load their module on first use (PEP 562), so that the command line starts without SQLAlchemy.
_MODULES = {
    "CAPTURE_FIELDS": "records",
    "EDITABLE_FIELDS": "records",
    "Catalog": "catalog",
    "ConfigVersion": "project_config",
    "Edit": "records",
    "EditBatch": "records",
    "FieldChange": "records",
    "FileCopy": "file_copies",
    "FileLocation": "catalog",
    "Image": "records",
    "ImageRecord": "records",
    "KnownCopy": "catalog",
    "KnownFile": "catalog",
    "MapPositions": "catalog",
    "Selection": "selection",
    "UpsertResult": "records",
    "catalog_location": "engine",
    "catalog_url": "engine",
    "create_catalog_engine": "engine",
    "current_revision": "engine",
    "head_revision": "engine",
    "mask_location": "engine",
    "mask_url": "engine",
    "shared_engine": "engine",
    "upgrade": "engine",
}

if TYPE_CHECKING:
    from panopipe.catalog.catalog import Catalog, FileLocation, KnownCopy, KnownFile, MapPositions
    from panopipe.catalog.engine import (
        catalog_location,
        catalog_url,
        create_catalog_engine,
        current_revision,
        head_revision,
        mask_location,
        mask_url,
        shared_engine,
        upgrade,
    )
    from panopipe.catalog.file_copies import FileCopy
    from panopipe.catalog.project_config import ConfigVersion
    from panopipe.catalog.records import (
        CAPTURE_FIELDS,
        EDITABLE_FIELDS,
        Edit,
        EditBatch,
        FieldChange,
        Image,
        ImageRecord,
        UpsertResult,
    )
    from panopipe.catalog.selection import Selection


__getattr__ = lazy_attributes(__name__, _MODULES)


__all__ = [
    "CAPTURE_FIELDS",
    "EDITABLE_FIELDS",
    "Catalog",
    "ConfigVersion",
    "Edit",
    "EditBatch",
    "FieldChange",
    "FileCopy",
    "FileLocation",
    "Image",
    "ImageRecord",
    "KnownCopy",
    "KnownFile",
    "MapPositions",
    "Selection",
    "UpsertResult",
    "catalog_location",
    "catalog_url",
    "create_catalog_engine",
    "current_revision",
    "head_revision",
    "mask_location",
    "mask_url",
    "shared_engine",
    "upgrade",
]
