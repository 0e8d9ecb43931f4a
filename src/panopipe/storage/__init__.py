"""Where images live: a local folder or S3, behind one interface."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from panopipe.storage.base import (
    CONCURRENT_REQUESTS,
    ObjectInfo,
    Progress,
    ReadStats,
    Storage,
    StorageStats,
    validate_key,
)
from panopipe.storage.folder import (
    FolderStorage,
    local_uris,
    open_atomic,
    refuse_database_file,
    replaced_file,
    same_file,
    write_atomic,
)

if TYPE_CHECKING:
    from panopipe.config import Settings


def open_storage(uri: str | Path, settings: Settings | None = None) -> Storage:
    """The storage rooted at ``uri``: a folder path, ``file://`` URL or ``s3://bucket/prefix``.

    ``settings`` configure S3 (endpoint URL, region, profile); by default they are loaded on first S3 use.
    Any other URL, or one missing its ``//``, is a :class:`~panopipe.errors.ConfigError`.
    """
    text = str(uri)
    path = local_path(text)
    if path is None:
        from panopipe.errors import ConfigError, StorageError
        from panopipe.storage.s3 import S3Storage  # boto3 is imported only when S3 is used

        try:
            return S3Storage.from_uri(text, settings=settings)
        except StorageError as exc:  # nothing was accessed: the URL is wrong (s3://, s3:///R001, a/../b)
            raise ConfigError(f"invalid S3 URL {text}: {exc}") from None
    return FolderStorage(path)


def resolve_uri(uri: str, settings: Settings | None = None) -> tuple[Storage, str]:
    """The storage holding the object at the absolute ``uri`` and its key there."""
    path = local_path(uri)
    if path is None:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return open_storage(f"s3://{bucket}", settings), key
    return FolderStorage(path.parent), path.name


def local_path(location: str) -> Path | None:
    """The path ``location`` names when it is a path or a ``file://`` URL (of this machine: no host or
    ``localhost``, its path percent-decoded, as RFC 8089 has it); ``None`` for an ``s3://`` URL. Any other URL,
    a file URL of another host, or one missing its ``//``, is a :class:`~panopipe.errors.ConfigError`."""
    from urllib.parse import unquote, urlsplit

    from panopipe.errors import ConfigError
    from panopipe.locations import url_scheme

    scheme = url_scheme(location)
    if scheme == "s3":
        return None
    if scheme not in (None, "file"):
        raise ConfigError(
            f"unsupported storage URL {location}: storage is a folder (a path or file:///PATH) or "
            "s3://BUCKET/PREFIX"
        )
    if scheme is None:
        return Path(location)
    url = urlsplit(location)
    if url.netloc not in ("", "localhost"):
        raise ConfigError(f"{location} names a file on another machine ({url.netloc}): give a local path")
    return Path(unquote(url.path))


__all__ = [
    "CONCURRENT_REQUESTS",
    "FolderStorage",
    "ObjectInfo",
    "Progress",
    "ReadStats",
    "Storage",
    "StorageStats",
    "local_path",
    "local_uris",
    "open_atomic",
    "open_storage",
    "refuse_database_file",
    "replaced_file",
    "resolve_uri",
    "same_file",
    "validate_key",
    "write_atomic",
]
