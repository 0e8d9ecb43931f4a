"""Where images live: a local folder or S3, behind one interface."""

from __future__ import annotations

from pathlib import Path

from panopipe.storage.base import ObjectInfo, Storage, validate_key
from panopipe.storage.folder import FolderStorage, write_atomic


def open_storage(uri: str | Path) -> Storage:
    """The storage rooted at ``uri``: a folder path, ``file://`` URL or ``s3://bucket/prefix``."""
    text = str(uri)
    if text.startswith("s3://"):
        from panopipe.storage.s3 import S3Storage

        return S3Storage.from_uri(text)
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    return FolderStorage(text)


def resolve_uri(uri: str) -> tuple[Storage, str]:
    """The storage holding the object at the absolute ``uri`` and its key there."""
    if uri.startswith("s3://"):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return open_storage(f"s3://{bucket}"), key
    path = Path(uri.removeprefix("file://"))
    return FolderStorage(path.parent), path.name


__all__ = ["FolderStorage", "ObjectInfo", "Storage", "open_storage", "resolve_uri", "validate_key", "write_atomic"]
