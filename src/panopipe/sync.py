"""Upload a capture folder to a storage: in parallel, resumable, skipping files already stored."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from panopipe.catalog import Catalog
from panopipe.errors import ConfigError, ObjectNotFoundError, StorageError
from panopipe.storage.base import HASH_CHUNK, Storage


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
    read or stored is reported in :attr:`SyncReport.failed` and does not stop the others; any other exception
    (including one raised by ``progress``) stops the sync and propagates.
    """
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, not {workers}")
    started = time.perf_counter()
    folder = Path(local_folder)
    if not folder.is_dir():
        raise StorageError(f"{folder} is not a folder")
    files = _capture_files(folder)
    bytes_total = sum(f.size for f in files)
    tracker = _Tracker(len(files), bytes_total, progress)
    stored = {info.key: info.size for info in destination.list()}

    def sync_one(file: _File) -> bool:
        """Whether ``file`` was (or, in a dry run, would be) uploaded."""
        if stored.get(file.key) == file.size and _is_stored(destination, file):
            tracker.add(file.size, file_done=True)
            return False
        if dry_run:
            tracker.add(file.size, file_done=True)
        else:
            destination.put_file(file.key, file.path, progress=tracker.add)
            tracker.add(0, file_done=True)
        return True

    uploaded: list[_File] = []
    skipped: list[_File] = []
    failed: dict[str, str] = {}
    with ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(sync_one, file): file for file in files}
        try:
            for future in as_completed(futures):
                file = futures[future]
                try:
                    (uploaded if future.result() else skipped).append(file)
                except StorageError as exc:
                    failed[file.key] = str(exc)
                except OSError as exc:
                    failed[file.key] = f"cannot read {file.path}: {exc.strerror}"
        except BaseException:
            tracker.stopped.set()
            pool.shutdown(cancel_futures=True)
            raise
    return SyncReport(
        uploaded=tuple(sorted(destination.uri(f.key) for f in uploaded)),
        skipped=tuple(sorted(destination.uri(f.key) for f in skipped)),
        failed=dict(sorted(failed.items())),
        bytes_uploaded=sum(f.size for f in uploaded),
        bytes_total=bytes_total,
        seconds=time.perf_counter() - started,
        dry_run=dry_run,
    )


def _capture_files(folder: Path) -> list[_File]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        for name in filenames:
            path = Path(dirpath) / name
            if not name.startswith(".") and path.is_file():
                files.append(_File(path.relative_to(folder).as_posix(), path, path.stat().st_size))
    return sorted(files, key=lambda f: f.key)


def _is_stored(destination: Storage, file: _File) -> bool:
    try:
        info = destination.head(file.key)
    except ObjectNotFoundError:
        return False
    remote = info.sha256 if info.sha256 is not None else destination.sha256(file.key)
    return info.size == file.size and remote == file_sha256(file.path)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sync_capture(
    catalog: Catalog,
    local_folder: str | Path,
    destination: Storage,
    *,
    dry_run: bool = False,
    workers: int = 8,
    progress: Callable[[SyncProgress], None] | None = None,
) -> SyncReport:
    """:func:`sync_folder`, then point the catalog's images of the uploaded files at their S3 URIs.

    Images keep their ids, metadata and edits; files the catalog does not know yet are left for
    ``panopipe ingest s3://...``.
    """
    report = sync_folder(local_folder, destination, dry_run=dry_run, workers=workers, progress=progress)
    if not dry_run:
        root = Path(local_folder).expanduser().resolve()
        stored = (*report.uploaded, *report.skipped)
        catalog.relocate({str(root / destination.key(uri)): uri for uri in stored})
    return report


__all__ = ["SyncProgress", "SyncReport", "file_sha256", "sync_capture", "sync_folder"]
