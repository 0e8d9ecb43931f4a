"""The shapes of catalog records as the API returns and accepts them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

CAPTURE_FIELDS: tuple[str, ...] = (
    "captured_at",
    "utc_offset_minutes",
    "lat",
    "lon",
    "alt",
    "gps_accuracy_m",
    "heading",
    "pitch",
    "roll",
    "make",
    "model",
    "camera_serial",
    "camera_index",
    "width",
    "height",
    "projection",
    "reel",
    "frame",
)
"""Fields whose values come from the file (its metadata, its name and folder)."""

EDITABLE_FIELDS: tuple[str, ...] = (
    *(f for f in CAPTURE_FIELDS if f not in ("width", "height")),
    "shot",
    "excluded",
)
"""Fields an edit may override. Pixel sizes are facts of the file and cannot be edited. ``excluded`` leaves an
image out of processing and publishing (``qc --fix`` thinning) while keeping it in the catalog."""

FILE_FIELDS: tuple[str, ...] = ("size", "content_hash", "etag", "modified_at")
"""Fields that identify the file's content."""


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """What ingest knows about one file: its identity, its captured metadata, or why it could not be read.

    ``id`` is set only to update a known image whose file moved (matched by content hash).
    """

    uri: str
    size: int | None = None
    content_hash: str | None = None
    etag: str | None = None
    modified_at: datetime | None = None
    captured_at: datetime | None = None
    utc_offset_minutes: int | None = None
    lat: float | None = None
    lon: float | None = None
    alt: float | None = None
    gps_accuracy_m: float | None = None
    heading: float | None = None
    pitch: float | None = None
    roll: float | None = None
    make: str | None = None
    model: str | None = None
    camera_serial: str | None = None
    camera_index: int | None = None
    width: int | None = None
    height: int | None = None
    projection: str | None = None
    reel: str | None = None
    frame: int | None = None
    extra: dict[str, Any] | None = None
    status: str = "ok"
    error: str | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Image:
    """An image as the catalog holds it, with its effective metadata (captured values overlaid with edits)."""

    id: str
    uri: str
    size: int | None
    content_hash: str | None
    etag: str | None
    modified_at: datetime | None
    captured_at: datetime | None
    utc_offset_minutes: int | None
    lat: float | None
    lon: float | None
    alt: float | None
    gps_accuracy_m: float | None
    heading: float | None
    pitch: float | None
    roll: float | None
    make: str | None
    model: str | None
    camera_serial: str | None
    camera_index: int | None
    width: int | None
    height: int | None
    projection: str | None
    reel: str | None
    frame: int | None
    shot: str | None
    extra: dict[str, Any] | None
    status: str
    error: str | None
    deleted: bool
    ingested_at: datetime
    updated_at: datetime
    excluded: bool = False
    route: str | None = None
    measure: float | None = None
    route_offset_m: float | None = None
    edited_fields: tuple[str, ...] = field(default=())
    flags: tuple[str, ...] = field(default=())
    """What ``panopipe qc`` found (names of :data:`~panopipe.qc.FLAGS`), filled by ``Catalog.images``/``get``."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; times are ISO 8601 in UTC with a ``Z``."""
        return {f.name: to_json_value(getattr(self, f.name)) for f in fields(self)}


IMAGE_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in fields(Image) if f.name not in ("edited_fields", "flags")
)


def to_json_value(value: Any) -> Any:
    """``value`` as JSON can carry it: datetimes as ISO 8601 UTC ending in ``Z``, tuples as lists."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """Ids of the images an upsert added, updated, and found unchanged."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field of one image changing from ``old`` to ``new`` (effective values)."""

    image_id: str
    field: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class Edit:
    """One recorded edit of one field."""

    id: int
    batch: str
    image_id: str
    field: str
    old_value: Any
    new_value: Any
    author: str
    reason: str
    created_at: datetime
    undone_at: datetime | None
    undone_by: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {f.name: to_json_value(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class EditBatch:
    """One edit batch: who made it, when and why, how many images and fields it changed, and its undo."""

    batch: str
    author: str
    reason: str
    created_at: datetime
    images: int
    fields: int
    changes: int
    undone_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {f.name: to_json_value(getattr(self, f.name)) for f in fields(self)}


__all__ = [
    "CAPTURE_FIELDS",
    "EDITABLE_FIELDS",
    "FILE_FIELDS",
    "IMAGE_COLUMNS",
    "Edit",
    "EditBatch",
    "FieldChange",
    "Image",
    "ImageRecord",
    "UpsertResult",
    "to_json_value",
]
