"""The storage interface: one abstract class, implemented once over a few private hooks per backend."""

from __future__ import annotations

import hashlib
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from panopipe.errors import ObjectNotFoundError, StorageError, is_transient_os_error

Progress = Callable[[int], None]
"""Called with the number of bytes just transferred."""

HASH_CHUNK = 8 * 1024 * 1024
CONCURRENT_REQUESTS = 16
"""Objects read or written at once by the code that reads or writes many (ingest, the event handler, verify,
Batch manifests): S3 answers each request in tens of milliseconds, so one request at a time leaves a
thread idle; a folder's reads gain little beyond the disk's own queue, and lose nothing."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a storage backend knows about one stored file or object without reading it."""

    uri: str
    key: str
    size: int
    etag: str | None = None
    modified: datetime | None = None
    version_id: str | None = None
    sha256: str | None = None
    """Hex SHA-256 of the content, when the backend stores it with the object."""


@dataclass(frozen=True, slots=True)
class Unlisted:
    """What a folder's scan found and could not look into: a symbolic link whose target does not exist (a
    disk not mounted), a link loop, a folder it may not read. What it holds is unknown, not gone."""

    uri: str
    key: str
    """Its key: ``""`` for the root folder itself."""
    reason: str


@dataclass(frozen=True, slots=True)
class ReadStats:
    """Read requests made and bytes read."""

    requests: int = 0
    bytes_read: int = 0


class StorageStats:
    """Thread-safe counters of read requests (head, range reads, gets, local copies) and bytes read, per key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, ReadStats] = {}
        self._total = ReadStats()

    def record(self, key: str, bytes_read: int = 0) -> None:
        """Count one request on ``key`` that read ``bytes_read`` bytes."""
        with self._lock:
            old = self._by_key.get(key, ReadStats())
            self._by_key[key] = ReadStats(old.requests + 1, old.bytes_read + bytes_read)
            self._total = ReadStats(self._total.requests + 1, self._total.bytes_read + bytes_read)

    def get(self, key: str) -> ReadStats:
        """The counts for ``key`` so far."""
        with self._lock:
            return self._by_key.get(key, ReadStats())

    def pop(self, key: str) -> ReadStats:
        """The counts for ``key``, forgetting them (the total keeps them)."""
        with self._lock:
            return self._by_key.pop(key, ReadStats())

    @property
    def total(self) -> ReadStats:
        """The counts over all keys."""
        with self._lock:
            return self._total


def os_storage_error(action: str, path: Path | str, error: OSError) -> StorageError:
    """``cannot <action> <path>: <reason>`` for a failed local file operation, transient when retrying may help
    (busy, interrupted: :func:`~panopipe.errors.is_transient_os_error`), not for a full disk or a denial."""
    return StorageError(f"cannot {action} {path}: {error.strerror}", transient=is_transient_os_error(error))


_CONTROL = re.compile("[\x00-\x1f\x7f]")


NOT_UTF8 = "the name is not valid UTF-8 (another encoding's, as unzip leaves from a Windows zip)"


def is_utf8(name: str) -> bool:
    """Whether ``name`` is text UTF-8 can hold: a file name of bytes that are not UTF-8 comes from the file
    system with those bytes as lone surrogates (Python's ``surrogateescape``), which no key, catalog or
    terminal takes."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_name(name: str) -> str:
    """``name`` as a terminal, a log or JSON can show it: bytes that are not UTF-8 as ``\\xe9``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key; raise :class:`StorageError` if it could escape the root.

    Keys use ``/`` as separator; they may not be empty, absolute, contain ``..`` or ``.`` segments,
    backslashes, control characters or what is not UTF-8.
    """
    if not key or key.startswith("/") or "\\" in key:
        raise StorageError(f"invalid storage key {key!r}: keys are relative, '/'-separated paths")
    if _CONTROL.search(key):
        raise StorageError(f"invalid storage key {key!r}: control characters are not allowed")
    if not is_utf8(key):
        raise StorageError(f"invalid storage key {shown_name(key)!r}: {NOT_UTF8}")
    parts = key.split("/")
    if "" in parts or "." in parts or ".." in parts:
        raise StorageError(f"invalid storage key {key!r}: empty, '.' and '..' segments are not allowed")
    return key


class Storage(ABC):
    """A place where images and outputs live: a local folder or an S3 prefix.

    Public methods validate keys and are implemented here once; backends override the private hooks.
    Keys are relative to the storage root; :meth:`uri` gives the absolute URI recorded in the catalog.
    """

    root_uri: str

    @property
    def stats(self) -> StorageStats:
        """Read requests and bytes read through this storage, per key."""
        # setdefault is atomic, so concurrent first uses share one counter without an __init__ in every backend.
        return self.__dict__.setdefault("_stats", StorageStats())

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
        info = self._head(validate_key(key))
        self.stats.record(key)
        return info

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        try:
            self.head(key)
        except ObjectNotFoundError:
            return False
        return True

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes of ``key`` from offset ``start`` (fewer at the end of the object)."""
        if start < 0 or length < 0:
            raise StorageError(f"invalid byte range {start}+{length} for {key}")
        data = self._read_range(validate_key(key), start, length)
        self.stats.record(key, len(data))
        return data

    def read_start(self, key: str, length: int) -> tuple[bytes, ObjectInfo]:
        """The first ``length`` bytes of ``key`` and what :meth:`head` tells of it, in one request where the
        backend can (S3: one ranged GET); :class:`ObjectNotFoundError` if it does not exist."""
        data, info = self._read_start(validate_key(key), length)
        self.stats.record(key, len(data))
        return data, info

    def get(self, key: str) -> bytes:
        """All bytes of ``key``."""
        data = self._get(validate_key(key))
        self.stats.record(key, len(data))
        return data

    def sha256(self, key: str) -> str | None:
        """Hex SHA-256 of the content of ``key``; ``None`` if the backend cannot tell without downloading it."""
        return self._sha256(validate_key(key))

    def put(self, key: str, data: bytes) -> ObjectInfo:
        """Store ``data`` at ``key`` atomically: readers see the old object or the whole new one."""
        return self._put(validate_key(key), data)

    def put_new(self, key: str, data: bytes) -> ObjectInfo:
        """Store ``data`` at ``key`` atomically only if nothing is there: of writers racing for one key exactly
        one succeeds, the others get :class:`~panopipe.errors.ObjectExistsError` (S3: ``If-None-Match: *``; a
        folder: the complete temporary file hard-linked to the name, which fails if the name exists)."""
        return self._put_new(validate_key(key), data)

    def put_file(self, key: str, path: Path, *, progress: Progress | None = None) -> ObjectInfo:
        """Store the local file ``path`` at ``key`` atomically, calling ``progress`` as bytes are stored."""
        return self._put_file(validate_key(key), Path(path), progress or _ignore)

    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error."""
        self._delete(validate_key(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order; what a folder could not look into is
        left out (see :meth:`scan`)."""
        return (entry for entry in self.scan(prefix) if isinstance(entry, ObjectInfo))

    def scan(self, prefix: str = "") -> Iterator[ObjectInfo | Unlisted]:
        """What :meth:`list` gives, and among it, in key order, what a folder could not look into whose key
        starts with ``prefix``: :class:`Unlisted`. Whoever takes an object missing from the listing for gone
        needs these. An S3 prefix has none: a listing it cannot make raises."""
        if prefix:
            validate_key(prefix.rstrip("/"))
        return self._list(prefix)

    def _put_file(self, key: str, path: Path, progress: Progress) -> ObjectInfo:
        info = self._put(key, path.read_bytes())
        progress(info.size)
        return info

    def _read_start(self, key: str, length: int) -> tuple[bytes, ObjectInfo]:
        info = self._head(key)
        return self._read_range(key, 0, length), info

    def _get(self, key: str) -> bytes:
        return self._read_range(key, 0, self._head(key).size)

    def _sha256(self, key: str) -> str | None:
        digest = hashlib.sha256()
        offset = 0
        while chunk := self._read_range(key, offset, HASH_CHUNK):
            digest.update(chunk)
            offset += len(chunk)
        return digest.hexdigest()

    @abstractmethod
    def _head(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    def _read_range(self, key: str, start: int, length: int) -> bytes: ...

    @abstractmethod
    def _put(self, key: str, data: bytes) -> ObjectInfo: ...

    @abstractmethod
    def _put_new(self, key: str, data: bytes) -> ObjectInfo: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    @abstractmethod
    def _list(self, prefix: str) -> Iterator[ObjectInfo | Unlisted]: ...


def _ignore(_nbytes: int) -> None:
    pass


__all__ = [
    "CONCURRENT_REQUESTS",
    "HASH_CHUNK",
    "NOT_UTF8",
    "ObjectInfo",
    "Progress",
    "ReadStats",
    "Storage",
    "StorageStats",
    "Unlisted",
    "is_utf8",
    "os_storage_error",
    "shown_name",
    "validate_key",
]
