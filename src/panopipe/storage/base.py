"""The storage interface: one abstract class, implemented once over a few private hooks per backend."""

from __future__ import annotations

import contextlib
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from panopipe.errors import StorageError


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a storage backend knows about one stored file or object without reading it."""

    uri: str
    key: str
    size: int
    etag: str | None = None
    modified: datetime | None = None
    version_id: str | None = None


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key; raise :class:`StorageError` if it could escape the root.

    Keys use ``/`` as separator; they may not be empty, absolute, contain ``..`` or ``.`` segments,
    backslashes or control characters.
    """
    if not key or key.startswith("/") or "\\" in key:
        raise StorageError(f"invalid storage key {key!r}: keys are relative, '/'-separated paths")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise StorageError(f"invalid storage key {key!r}: control characters are not allowed")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError(f"invalid storage key {key!r}: empty, '.' and '..' segments are not allowed")
    return key


class Storage(ABC):
    """A place where images and outputs live: a local folder or an S3 prefix.

    Public methods validate keys and are implemented here once; backends override the private hooks.
    Keys are relative to the storage root; :meth:`uri` gives the absolute URI recorded in the catalog.
    """

    root_uri: str

    def uri(self, key: str) -> str:
        """The absolute URI of ``key``."""
        return f"{self.root_uri.rstrip('/')}/{validate_key(key)}"

    def key(self, uri: str) -> str:
        """The key of an absolute ``uri`` under this storage's root."""
        root = self.root_uri.rstrip("/") + "/"
        if not uri.startswith(root):
            raise StorageError(f"{uri} is not under the storage root {self.root_uri}")
        return validate_key(uri[len(root) :])

    def head(self, key: str) -> ObjectInfo:
        """Size, ETag and modification time of ``key``; :class:`ObjectNotFoundError` if it does not exist."""
        return self._head(validate_key(key))

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        from panopipe.errors import ObjectNotFoundError

        try:
            self.head(key)
        except ObjectNotFoundError:
            return False
        return True

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes of ``key`` from offset ``start`` (fewer at the end of the object)."""
        if start < 0 or length < 0:
            raise StorageError(f"invalid byte range {start}+{length} for {key}")
        return self._read_range(validate_key(key), start, length)

    def get(self, key: str) -> bytes:
        """All bytes of ``key``."""
        return self._get(validate_key(key))

    def put(self, key: str, data: bytes) -> ObjectInfo:
        """Store ``data`` at ``key`` atomically: readers see the old object or the whole new one."""
        return self._put(validate_key(key), data)

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        """Store the local file ``path`` at ``key`` atomically."""
        return self._put_file(validate_key(key), Path(path))

    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error."""
        self._delete(validate_key(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""
        if prefix:
            validate_key(prefix.rstrip("/"))
        return self._list(prefix)

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        """A local file with the content of ``key``, for tools that need a path; removed afterwards if temporary."""
        validate_key(key)
        with tempfile.TemporaryDirectory(prefix="panopipe-") as tmp:
            path = Path(tmp) / Path(key).name
            path.write_bytes(self._get(key))
            yield path

    def _put_file(self, key: str, path: Path) -> ObjectInfo:
        return self._put(key, path.read_bytes())

    def _get(self, key: str) -> bytes:
        return self._read_range(key, 0, self._head(key).size)

    @abstractmethod
    def _head(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    def _read_range(self, key: str, start: int, length: int) -> bytes: ...

    @abstractmethod
    def _put(self, key: str, data: bytes) -> ObjectInfo: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    @abstractmethod
    def _list(self, prefix: str) -> Iterator[ObjectInfo]: ...
