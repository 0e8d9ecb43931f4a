"""The metadata catalog: images, non-destructive edits, artifacts and jobs, on SQLite or PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from panopipe._lazy import lazy_exports

if TYPE_CHECKING:
    from panopipe.catalog.catalog import Catalog, KnownFile
    from panopipe.catalog.engine import catalog_url, create_catalog_engine, mask_url
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

# SQLAlchemy loads with the first name that needs it, not with the package (the CLI starts without it).
__getattr__ = lazy_exports(
    __name__,
    {
        "catalog": ("Catalog", "KnownFile"),
        "engine": ("catalog_url", "create_catalog_engine", "mask_url"),
        "records": (
            "CAPTURE_FIELDS",
            "EDITABLE_FIELDS",
            "Edit",
            "FieldChange",
            "Image",
            "ImageRecord",
            "UpsertResult",
        ),
        "selection": ("Selection",),
    },
)

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
    "mask_url",
]
