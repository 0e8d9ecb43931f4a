"""Storage in a local folder."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from panopipe.errors import ConfigError, ObjectExistsError, ObjectNotFoundError
from panopipe.storage.base import ObjectInfo, Storage, Unlisted, os_storage_error

UNFLUSHED_BYTES = 1 << 20
"""Create-only writes up to this size (thumbnails, previews) are not flushed to disk before they get their name."""


class FolderStorage(Storage):
    """Files under a root folder. URIs are absolute paths."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.root_uri = str(self.root)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def path(self, key: str) -> Path:
        """The local path of ``key``."""
        return self._path(key)

    def _path(self, key: str) -> Path:
        from panopipe.storage.base import validate_key

        return self.root / validate_key(key)

    def _info(self, key: str, path: Path, stat: os.stat_result) -> ObjectInfo:
        return ObjectInfo(
            uri=str(path),
            key=key,
            size=stat.st_size,
            modified=datetime.fromtimestamp(stat.st_mtime, UTC),
        )

    def listed(self, name: str) -> ObjectInfo:
        """The file ``name`` in the root folder as :meth:`list` shows it: the name is not checked here (as
        listing does not check names), reading the file checks it."""
        path = self.root / name
        try:
            return self._info(name, path, path.stat())
        except OSError as exc:
            raise os_storage_error("read", path, exc) from exc

    def _head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no such file: {path}") from None
        except OSError as exc:
            raise os_storage_error("read", path, exc) from exc
        return self._info(key, path, stat)

    def _read_range(self, key: str, start: int, length: int) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as handle:
                handle.seek(start)
                return handle.read(length)
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no such file: {path}") from None
        except OSError as exc:
            raise os_storage_error("read", path, exc) from exc

    def _get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no such file: {path}") from None
        except OSError as exc:
            raise os_storage_error("read", path, exc) from exc

    def _put(self, key: str, data: bytes) -> ObjectInfo:
        path = self._path(key)
        write_atomic(path, data)
        return self._info(key, path, path.stat())

    def _put_new(self, key: str, data: bytes) -> ObjectInfo:
        path = self._path(key)
        # Create-only keys hold step outputs. A small one is not flushed to disk (the fsync was most of a
        # thumbnail's write): written back in one piece, after a power loss it is complete or empty, and
        # put_output replaces an empty one. A larger one could be left cut short at any size: flushed.
        write_atomic(path, data, overwrite=False, durable=len(data) > UNFLUSHED_BYTES)
        return self._info(key, path, path.stat())

    def _delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def _list(self, prefix: str) -> Iterator[ObjectInfo | Unlisted]:
        found: list[tuple[str, Path | Unlisted]] = []

        def unreadable(error: OSError) -> None:
            if not isinstance(error, FileNotFoundError):  # else removed since it was listed: gone
                path = Path(error.filename)
                key = "" if path == self.root else path.relative_to(self.root).as_posix()
                found.append((key, Unlisted(str(path), key, f"cannot read: {error.strerror}")))

        for dirpath, _dirnames, filenames in walk(self.root, onerror=unreadable):
            for name in filenames:  # and what is not a folder: a link whose target is missing
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if not name.startswith(".panopipe-tmp-"):
                    found.append((key, path))
        for key, entry in sorted(found, key=lambda item: item[0]):
            if not key.startswith(prefix):
                continue
            if isinstance(entry, Unlisted):
                yield entry
                continue
            try:
                yield self._info(key, entry, entry.stat())
            except FileNotFoundError:
                if (reason := missing_target(entry)) is not None:
                    yield Unlisted(str(entry), key, reason)  # else removed since it was listed: gone
            except OSError as exc:  # a link loop, a folder it may not search
                yield Unlisted(str(entry), key, f"cannot read: {exc.strerror}")


def missing_target(path: Path) -> str | None:
    """Why ``path`` cannot be read when it is a symbolic link whose target does not exist (a camera's folder
    on a disk not mounted), where it points; ``None`` when it is no such link."""
    if not path.is_symlink() or os.path.lexists(os.path.realpath(path)):
        return None
    return f"a link to {os.path.realpath(path)}, which does not exist (a disk not mounted?)"


def walk(
    root: Path, onerror: Callable[[OSError], None] | None = None
) -> Iterator[tuple[str, list[str], list[str]]]:
    """:func:`os.walk` of ``root`` that walks folders linked in too (a camera's folder on another disk), each
    folder once: a link back to a folder already walked (a loop) is not followed again. Removing names from
    the folder names yielded leaves them out, and ``onerror`` is told of a folder that cannot be listed, as
    with :func:`os.walk`. A link whose target does not exist is among the file names."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        folder = os.stat(dirpath)
        if (folder.st_dev, folder.st_ino) in seen:
            dirnames.clear()
            continue
        seen.add((folder.st_dev, folder.st_ino))
        yield dirpath, dirnames, filenames


def write_atomic(
    path: Path,
    data: bytes | Iterable[bytes | memoryview],
    mode: int | None = None,
    *,
    overwrite: bool = True,
    durable: bool = True,
) -> None:
    """Write ``data`` (bytes, or pieces written in turn) to ``path`` atomically: :func:`open_atomic`."""
    with open_atomic(path, mode, overwrite=overwrite, durable=durable) as handle:
        if isinstance(data, bytes):
            handle.write(data)
        else:
            handle.writelines(data)


@contextlib.contextmanager
def open_atomic(
    path: Path, mode: int | None = None, *, overwrite: bool = True, durable: bool = True
) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: a temporary file in the same folder, flushed to disk and
    renamed into place when the block ends, removed if it raises (``path`` is then left as it was). The file
    gets ``mode``, by default what the umask leaves of 0666, as for any file a program creates (mkstemp's 0600
    would hide published files from their readers). A symbolic link at ``path`` is kept and the file it names
    replaced; a device or FIFO at ``path`` (``/dev/stdout``, ``/dev/null``) is written to as it is, without a
    temporary file (:func:`replaced_file`).
    Without ``overwrite`` the complete file is hard-linked to ``path`` instead, which fails atomically with
    :class:`~panopipe.errors.ObjectExistsError` when ``path`` exists (what ``O_EXCL`` does for an empty file).
    Without ``durable`` the file is not flushed to disk first: every process still sees ``path`` complete or
    not at all, but after a power loss or a kernel crash ``path`` may be an empty file.
    """
    target = replaced_file(path) if overwrite else path
    if target is None:
        try:
            with open(path, "wb") as stream:
                yield stream
        except OSError as exc:
            raise os_storage_error("write", path, exc) from exc
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temporary(target.parent)
    except OSError as exc:
        raise os_storage_error("write", path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)
            os.unlink(tmp)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, FileExistsError):
            raise ObjectExistsError(f"{path} already exists") from exc
        if isinstance(exc, OSError):
            raise os_storage_error("write", path, exc) from exc
        raise


def replaced_file(path: Path) -> Path | None:
    """The file that writing ``path`` whole replaces: ``path``, or the file a symbolic link there names (the
    link is kept); ``None`` when ``path`` is neither a file nor absent but a device, FIFO or socket, or is
    under ``/dev`` or ``/proc`` (``/dev/stdout`` redirected to a file), which is written to in place: a
    temporary file renamed over ``/dev/null`` would replace it."""
    if Path(os.path.abspath(path)).parts[1:2] in (("dev",), ("proc",)):
        return None
    try:
        kind = path.stat().st_mode
    except OSError:  # absent (or a dangling link: its file is created), or unreadable: writing says why
        kind = stat.S_IFREG
    if not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):
        return None
    return Path(os.path.realpath(path))


def same_file(path: Path, other: Path) -> bool:
    """Whether ``path`` and ``other`` name one file: the same path once links are resolved, or (hard links)
    the same file on disk."""
    if os.path.realpath(path) == os.path.realpath(other):
        return True
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


def local_uris(path: Path) -> list[str]:
    """The URIs a local file at ``path`` may be recorded under (a folder's URIs are absolute paths): ``path``
    made absolute, and with its links resolved."""
    return sorted({os.path.abspath(path), os.path.realpath(path)})


SQLITE_FILES = ("", "-wal", "-shm", "-journal")
"""What SQLite appends to a database's name for the files it keeps beside it."""


def refuse_database_file(path: Path, database: str | None) -> None:
    """:class:`ConfigError` when writing ``path`` would replace the SQLite ``database`` file (none: the
    catalog is on a server) or a file SQLite keeps beside it, links resolved."""
    if database is not None and any(same_file(path, Path(database + end)) for end in SQLITE_FILES):
        raise ConfigError(f"cannot write {path}: it is a file of the catalog {database}; give another name")


def _create_temporary(folder: Path) -> tuple[int, Path]:
    """A new temporary file in ``folder``, opened for writing with mode 0666 less the umask."""
    while True:
        tmp = folder / f".panopipe-tmp-{secrets.token_hex(8)}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue


__all__ = [
    "SQLITE_FILES",
    "UNFLUSHED_BYTES",
    "FolderStorage",
    "local_uris",
    "missing_target",
    "open_atomic",
    "refuse_database_file",
    "replaced_file",
    "same_file",
    "walk",
    "write_atomic",
]
