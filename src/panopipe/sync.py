"""Upload a capture folder to a storage: in parallel, resumable, skipping files already stored."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

from panopipe.catalog import Catalog, FileLocation
from panopipe.config import Settings, project_settings
from panopipe.errors import ConfigError, EndpointUnreachableError, ObjectNotFoundError, StorageError
from panopipe.ingest import JPEG_SUFFIXES, PathFields, path_fields, path_pattern
from panopipe.storage import local_path
from panopipe.storage.base import HASH_CHUNK, ObjectInfo, Storage, Unlisted, shown_name
from panopipe.storage.folder import FolderStorage


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """How far a sync is. Skipped files count as done, with their bytes."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What a sync did. In a dry run, ``uploaded`` lists what would have been uploaded."""

    uploaded: tuple[str, ...]
    """URIs of the uploaded objects, sorted."""
    skipped: tuple[str, ...]
    """URIs of the objects that were already stored with the same SHA-256, sorted."""
    failed: Mapping[str, str]
    """Why each failed file failed, by path relative to the synced folder."""
    bytes_uploaded: int
    bytes_total: int
    seconds: float
    dry_run: bool = False
    not_repointed: tuple[str, ...] = ()
    """Paths of synced files whose catalogued images still point at them: other images have their new URIs
    (copies uploaded there by another tool, without panopipe's SHA-256, and catalogued). Sorted."""

    @property
    def ok(self) -> bool:
        """Whether every file is now stored."""
        return not self.failed


@dataclass(frozen=True, slots=True)
class _File:
    key: str
    path: Path
    size: int


class _Cancelled(Exception):
    """Raised in a worker's progress callback to stop its upload once the sync is interrupted."""


class _Tracker:
    """Counts progress from all workers and reports it one call at a time."""

    def __init__(self, files_total: int, bytes_total: int, progress: Callable[[SyncProgress], None] | None):
        self._lock = threading.Lock()
        self._progress = progress
        self._files_total = files_total
        self._bytes_total = bytes_total
        self._files_done = 0
        self._bytes_done = 0
        self.stopped = threading.Event()

    def add(self, nbytes: int, *, file_done: bool = False) -> None:
        if self.stopped.is_set():
            raise _Cancelled
        with self._lock:
            self._bytes_done += nbytes
            self._files_done += file_done
            if self._progress is not None:
                self._progress(
                    SyncProgress(self._files_done, self._files_total, self._bytes_done, self._bytes_total)
                )


def sync_folder(
    local_folder: str | Path,
    destination: Storage,
    *,
    dry_run: bool = False,
    workers: int = 8,
    progress: Callable[[SyncProgress], None] | None = None,
) -> SyncReport:
    """Upload every file under ``local_folder`` to ``destination``, keyed by its path relative to the folder.

    Files already stored with the same size and SHA-256 are skipped, so an interrupted sync continues where it
    stopped (S3 also resumes a large file's unfinished multipart upload). Hidden files (names starting with
    ``.``) are ignored. ``progress`` is called from worker threads, one call at a time. A file that cannot be
    read or stored, or whose name ``destination`` cannot hold (a backslash, a control character: a dry run
    says so too), is reported in :attr:`SyncReport.failed` and does not stop the others; an endpoint that
    cannot be reached (:class:`~panopipe.errors.EndpointUnreachableError`) and any other exception (including
    one raised by ``progress``) stop the sync and propagate.
    """
    folder = _capture_folder(local_folder, destination)
    files, unstorable = _capture_files(folder, destination)
    report, _ = _sync(folder, files, unstorable, destination, dry_run, workers, progress)
    return report


def sync_capture(
    catalog: Catalog,
    local_folder: str | Path,
    destination: Storage,
    settings: Settings,
    *,
    dry_run: bool = False,
    workers: int = 8,
    progress: Callable[[SyncProgress], None] | None = None,
) -> SyncReport:
    """:func:`sync_folder`, then point the catalog's images of the synced files at their stored copies.

    Images keep their ids, metadata and edits, and an ingest of ``destination`` then reads none of them
    again (see :attr:`SyncReport.not_repointed` for those that keep their paths); files the catalog does not
    know yet are left for ``panopipe ingest``. A destination where the ingest ``path_pattern`` reads a
    JPEG's reel, frame or camera otherwise than in the folder is refused before anything is uploaded (a
    :class:`~panopipe.errors.ConfigError` saying where to sync instead): reading the files there would
    regroup their shots.
    """
    folder = _capture_folder(local_folder, destination).resolve()
    files, unstorable = _capture_files(folder, destination)
    _check_layout(folder, files, destination, path_pattern(project_settings(catalog, settings).ingest))
    report, stored = _sync(folder, files, unstorable, destination, dry_run, workers, progress)
    if dry_run:
        return report
    stayed = catalog.relocate(
        {
            str(folder / key): FileLocation(info.uri, info.size, info.modified, info.etag)
            for key, info in stored.items()
        }
    )
    return replace(report, not_repointed=tuple(stayed))


def _capture_folder(local_folder: str | Path, destination: Storage) -> Path:
    """``local_folder`` as a path; an error when it is no folder, or when ``destination`` is a folder that is
    it, holds it or is inside it (each sync would copy the copies of the last), or that is or lies under a file
    (every file would fail, after a dry run that said they would be uploaded)."""
    folder = Path(local_folder).expanduser()
    if not folder.is_dir():
        raise StorageError(f"{folder} is not a folder")
    root = local_path(destination.root_uri)
    if root is not None:
        existing = next(path for path in (root, *root.parents) if os.path.exists(path))  # OSError: False
        if not os.path.isdir(existing):
            raise ConfigError(f"cannot sync to {root}: {existing} is a file, not a folder; choose a folder")
        source, target = folder.resolve(), root.resolve()
        if source == target or source in target.parents or target in source.parents:
            where = "is" if source == target else "is inside" if source in target.parents else "holds"
            raise ConfigError(
                f"cannot sync {folder} to {root}: the destination {where} the capture folder; choose a folder "
                "outside it"
            )
    return folder


def _sync(
    folder: Path,
    files: list[_File],
    unstorable: dict[str, str],
    destination: Storage,
    dry_run: bool,
    workers: int,
    progress: Callable[[SyncProgress], None] | None,
) -> tuple[SyncReport, dict[str, ObjectInfo]]:
    """:func:`sync_folder` of ``files``, the files ``unstorable`` failed already (why, by key); with the stored
    object of each file stored now, by key."""
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    started = time.perf_counter()
    bytes_total = sum(f.size for f in files)
    tracker = _Tracker(len(files), bytes_total, progress)
    stored_sizes = {info.key: info.size for info in destination.list()}

    def sync_one(file: _File) -> tuple[bool, ObjectInfo | None]:
        """Whether ``file`` was (or, in a dry run, would be) uploaded, and its stored object (none in a dry
        run's upload)."""
        if stored_sizes.get(file.key) == file.size and (info := _stored_copy(destination, file)) is not None:
            tracker.add(file.size, file_done=True)
            return False, info
        if dry_run:
            tracker.add(file.size, file_done=True)
            return True, None
        info = destination.put_file(file.key, file.path, progress=tracker.add)
        tracker.add(0, file_done=True)
        return True, info

    uploaded: list[_File] = []
    skipped: list[_File] = []
    failed = dict(unstorable)
    stored: dict[str, ObjectInfo] = {}
    with ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(sync_one, file): file for file in files}
        try:
            for future in as_completed(futures):
                file = futures[future]
                try:
                    was_uploaded, info = future.result()
                except EndpointUnreachableError:
                    raise  # every other file would fail alike: one line, not one per file
                except StorageError as exc:
                    failed[file.key] = str(exc)
                except OSError as exc:
                    failed[file.key] = f"cannot read {file.path}: {exc.strerror}"
                else:
                    (uploaded if was_uploaded else skipped).append(file)
                    if info is not None:
                        stored[file.key] = info
        except BaseException:
            tracker.stopped.set()
            pool.shutdown(cancel_futures=True)
            raise
    report = SyncReport(
        uploaded=tuple(sorted(destination.uri(f.key) for f in uploaded)),
        skipped=tuple(sorted(destination.uri(f.key) for f in skipped)),
        failed=dict(sorted(failed.items())),
        bytes_uploaded=sum(f.size for f in uploaded),
        bytes_total=bytes_total,
        seconds=time.perf_counter() - started,
        dry_run=dry_run,
    )
    return report, stored


def _storable(files: list[_File], destination: Storage) -> tuple[list[_File], dict[str, str]]:
    """The ``files`` whose keys ``destination`` can hold, and why it cannot hold the others', by key."""
    storable: list[_File] = []
    unstorable: dict[str, str] = {}
    for file in files:
        try:
            destination.uri(file.key)
        except StorageError as exc:
            unstorable[shown_name(file.key)] = f"{exc}; rename the file"
        else:
            storable.append(file)
    return storable, unstorable


def _check_layout(folder: Path, files: list[_File], destination: Storage, pattern: re.Pattern[str]) -> None:
    """Refuse ``destination`` if ``pattern`` reads a JPEG's reel, frame or camera there otherwise than in
    ``folder``, saying where to sync instead when the folder's name would keep them."""
    for file in files:
        if not file.key.lower().endswith(JPEG_SUFFIXES):
            continue
        here = path_fields(pattern, str(folder / file.key))
        there = path_fields(pattern, destination.uri(file.key))
        if here == there:
            continue
        instead = f"{destination.root_uri.rstrip('/')}/{folder.name}"
        if path_fields(pattern, f"{instead}/{file.key}") == here:
            hint = f"sync to {instead} instead, to keep the folder's name"
        else:
            hint = "sync to a destination with the folder's layout, or change the ingest path_pattern"
        raise ConfigError(
            f"ingest would read {destination.uri(file.key)} as {_describe(there)}, not {_describe(here)} "
            f"as here: {hint}"
        )


def _describe(fields: PathFields) -> str:
    values: dict[str, object] = dict(fields)
    parts = [f"{label} {values[name]}" for name, label in _FIELD_LABELS if name in values]
    return ", ".join(parts) if parts else "no reel, frame or camera"


_FIELD_LABELS = (("reel", "reel"), ("frame", "frame"), ("camera_index", "camera"))


def _capture_files(folder: Path, destination: Storage) -> tuple[list[_File], dict[str, str]]:
    """The files under ``folder`` to sync (not hidden ones, nor those in hidden folders) whose keys
    ``destination`` can hold, and why each other one fails, by key: a name it cannot hold, or what the folder's
    scan could not look into (a linked folder whose disk is not mounted)."""
    files: list[_File] = []
    unreadable: dict[str, str] = {}
    for entry in FolderStorage(folder).scan():
        if any(part.startswith(".") for part in entry.key.split("/")):
            continue
        if isinstance(entry, Unlisted):
            unreadable[shown_name(entry.key) or "."] = entry.reason
        else:
            files.append(_File(entry.key, folder / entry.key, entry.size))
    storable, unstorable = _storable(files, destination)
    return storable, unstorable | unreadable


def _stored_copy(destination: Storage, file: _File) -> ObjectInfo | None:
    """The object stored at ``file``'s key if it holds the same content (size and SHA-256)."""
    try:
        info = destination.head(file.key)
    except ObjectNotFoundError:
        return None
    remote = info.sha256 if info.sha256 is not None else destination.sha256(file.key)
    return info if info.size == file.size and remote == file_sha256(file.path) else None


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["SyncProgress", "SyncReport", "file_sha256", "sync_capture", "sync_folder"]
