"""The metadata catalog: images, non-destructive edits, artifacts and jobs, on SQLite or PostgreSQL."""

from panopipe.catalog.catalog import Catalog, KnownFile
from panopipe.catalog.engine import (
    catalog_url,
    create_catalog_engine,
    current_revision,
    head_revision,
    mask_url,
    shared_engine,
    upgrade,
)
from panopipe.catalog.records import (
    CAPTURE_FIELDS,
    EDITABLE_FIELDS,
    Edit,
    FieldChange,
    Image,
    ImageRecord,
    UpsertResult,
)
from panopipe.catalog.selection import Selection

__all__ = [
    "CAPTURE_FIELDS",
    "EDITABLE_FIELDS",
    "Catalog",
    "Edit",
    "FieldChange",
    "Image",
    "ImageRecord",
    "KnownFile",
    "Selection",
    "UpsertResult",
    "catalog_url",
    "create_catalog_engine",
    "current_revision",
    "head_revision",
    "mask_url",
    "shared_engine",
    "upgrade",
]
