"""Ingest: walk folders or S3 prefixes, read each image's header in parallel, upsert the catalog idempotently."""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import NamedTuple, TypedDict, TypeVar, cast

from panopipe.catalog import Catalog, FileCopy, ImageRecord, KnownFile, Selection
from panopipe.catalog.values import text_limit, validate_value
from panopipe.config import IngestRules, Settings, project_settings
from panopipe.errors import ConfigError, MetadataError, ObjectNotFoundError, StorageError
from panopipe.metadata import ImageMetadata, read_jpeg
from panopipe.parent_watch import exit_with_parent
from panopipe.pipeline import load_pipeline, output_prefixes, refuse_sources_in_outputs
from panopipe.storage import (
    CONCURRENT_REQUESTS,
    FolderStorage,
    ObjectInfo,
    Storage,
    local_path,
    open_storage,
    resolve_uri,
)
from panopipe.storage.base import NOT_UTF8, Unlisted, is_utf8, shown_name
from panopipe.storage.folder import missing_target

JPEG_SUFFIXES = (".jpg", ".jpeg")
HEADER_CHUNK = 64 * 1024  # one read covers the header of most camera JPEGs
ONE_READ = 8 << 20
"""A local file up to this size is parsed and hashed from one read; a larger one is hashed in chunks."""
HASH_CHUNK = 1 << 20
COMMIT_FILES = 5000
"""The records of this many files read are written to the catalog together, each such chunk committed on its
own while the next files are read: an ingest stopped part-way keeps what it wrote, and the next one does not
read those files again. Writing 30,000 records in chunks of 5,000 took 5% (SQLite) to 13% (PostgreSQL) longer
than in one write, in chunks of 1,000 25%; a stop loses at most a second or two of reading 5,000 small local
files on two cores (:data:`COMMIT_S` bounds what it loses of slower sources)."""
COMMIT_S = 5.0
"""Seconds of reading after which the files read are written, if fewer than :data:`COMMIT_FILES` (slow reads)."""

_Known = TypeVar("_Known")
Progress = Callable[[int, int], None]
"""Called with (files done, files to read)."""


@dataclass(frozen=True, slots=True)
class IngestFailure:
    """A file that could not be read, and why."""

    uri: str
    reason: str


@dataclass(frozen=True, slots=True)
class IngestDuplicate:
    """A file not added because the catalog holds its content already (the same SHA-256) at ``original_uri``,
    or another file of the same ingest has it."""

    uri: str
    original_uri: str


@dataclass(frozen=True, slots=True)
class IngestUnlisted:
    """What a source's listing found and could not look into (a camera's folder linked in from a disk not
    mounted, a folder it may not read), and why. The ``kept`` images catalogued under it are not marked
    deleted: nothing tells that their files are gone."""

    uri: str
    reason: str
    kept: int


@dataclass(slots=True)
class IngestReport:
    """What an ingest run did. Each JPEG file of the sources is counted once: added, updated, unchanged,
    failed (unreadable: recorded with ``status='failed'`` all the same) or a duplicate; ``deleted`` counts the
    images whose file is gone. What a listing could not look into (a link whose target is missing: a disk not
    mounted) is failed when named as a JPEG, else :attr:`unlisted`; the images catalogued under it are kept."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: list[IngestFailure] = field(default_factory=list)
    duplicates: list[IngestDuplicate] = field(default_factory=list)
    unlisted: list[IngestUnlisted] = field(default_factory=list)
    """What the sources' listings could not look into (a folder linked in from a disk not mounted), but the
    links named as JPEGs (failed)."""
    unchanged_copies: int = 0
    """Of the unchanged files, those known to hold the content of an image elsewhere (a capture folder since
    synced to S3, say): found duplicates before, not read again."""
    empty_sources: list[str] = field(default_factory=list)
    """Sources that hold no file at all (a mistyped S3 prefix, say), as given."""
    not_jpeg: Counter[str] = field(default_factory=Counter)
    """Files of the sources that are not JPEGs, not read, by extension (``.png``; ``""`` for none)."""
    own_outputs: Counter[str] = field(default_factory=Counter)
    """Files of the sources under panopipe's own output roots (see :func:`~panopipe.pipeline.output_prefixes`),
    not read, by root: its panoramas, previews and thumbnails are no survey images."""
    bytes_read: int = 0
    files_read: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every file was read, and every folder looked into."""
        return not self.failed and not self.unlisted

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary."""
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "unchanged_copies": self.unchanged_copies,
            "deleted": self.deleted,
            "failed": [{"uri": f.uri, "reason": f.reason} for f in self.failed],
            "unlisted": [{"uri": u.uri, "reason": u.reason, "kept": u.kept} for u in self.unlisted],
            "duplicates": [{"uri": d.uri, "original_uri": d.original_uri} for d in self.duplicates],
            "empty_sources": self.empty_sources,
            "not_jpeg": dict(sorted(self.not_jpeg.items())),
            "own_outputs": dict(sorted(self.own_outputs.items())),
            "files_read": self.files_read,
            "bytes_read": self.bytes_read,
            "bytes_read_per_image": round(self.bytes_read / self.files_read) if self.files_read else 0,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class _Read:
    info: ObjectInfo
    metadata: ImageMetadata | None
    content_hash: str | None
    error: str | None
    bytes_read: int
    unreachable: bool = False
    """The file could not be read (access denied, a network error): nothing is known of its content, so it
    is not recorded as failed, and the next ingest reads it again."""


def ingest(
    catalog: Catalog,
    sources: Sequence[str | Path],
    settings: Settings,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Bring the images under ``sources`` (folders, files or ``s3://`` prefixes) into ``catalog``.

    Files whose size and modification time (ETag on S3) match the catalog are not read again. Unreadable
    files (a bad name included) are recorded with ``status='failed'`` and their reason, and the rest go on;
    an unchanged file that failed before is reported failed again. A file that could not be read at all
    (access denied, a network error) is reported, not recorded: the next ingest reads it. A file whose content moved keeps its
    image's id (see :func:`_set_aside_duplicates`); one whose content the catalog holds elsewhere is a
    duplicate, reported and not added, then known as a copy (see :mod:`panopipe.catalog.file_copies`) and
    not read again while it is unchanged. Files gone from a source folder are marked deleted, but not those
    under what its listing could not look into (a camera's folder linked in from a disk not mounted: reported
    in :attr:`IngestReport.unlisted`, or failed when its name is a JPEG's). A source that
    holds no file at all is reported in :attr:`IngestReport.empty_sources`. The files under panopipe's own
    output roots are left alone, as the event handler leaves them: counted in
    :attr:`IngestReport.own_outputs`, neither read nor marked deleted; a source that is one of those roots or
    lies inside one is a :class:`ConfigError` (:func:`~panopipe.pipeline.refuse_sources_in_outputs`).

    The records are written as the files are read, a chunk at a time (:data:`COMMIT_FILES`), each committed:
    an ingest stopped part-way keeps what it wrote, and the next one reads only the rest. What needs every
    file of a source seen, marking the files gone deleted and grouping the new frames into shots, is done
    once all are read (or by the next ingest).
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    started = time.perf_counter()
    settings = project_settings(catalog, settings)
    rules = path_pattern(settings.ingest)
    pipeline = load_pipeline(catalog, settings)
    refuse_sources_in_outputs(sources, pipeline, settings)
    own = output_prefixes(pipeline, settings)
    report = IngestReport()
    # a mistyped source stops before any work
    listed = [_list_source(source, settings, own) for source in sources]
    for source, (storage, uri_prefix, listing, others, outputs, unlisted, one_file) in zip(
        sources, listed, strict=True
    ):
        if not listing and not others and not outputs and not unlisted:
            report.empty_sources.append(str(source))
        report.not_jpeg.update(others)
        report.own_outputs.update(outputs)
        known = _within(catalog.known_files(uri_prefix), uri_prefix, one_file)
        known_copies = _within(catalog.known_copies(uri_prefix), uri_prefix, one_file)
        # A copy whose image's file moved here or went away is read again: it may take the image over.
        copies = {uri: c.file for uri, c in known_copies.items() if not _moved(c.image_uri, uri)}
        listing, too_long = _storable(listing)
        report.failed += too_long
        unseen = _not_looked_into(unlisted, known, known_copies.keys(), own, report)
        to_read = [info for info in listing if _changed(known.get(info.uri) or copies.get(info.uri), info)]
        present = {info.uri for info in listing}
        unread = present - {info.uri for info in to_read}
        failed_before = _failed_before(catalog, unread)
        report.unchanged += len(unread) - len(failed_before)
        report.unchanged_copies += len(unread & copies.keys())
        report.failed += failed_before
        writer = _Writer(
            catalog,
            storage,
            rules,
            settings.ingest.shot_tolerance_s,
            workers,
            report,
            known,
            known_copies.keys(),
            present | unseen,
            {info.uri for info in to_read},
        )
        for reads in _in_chunks(_read_all(storage, to_read, workers, progress)):
            writer.write(reads)
        writer.finish(own)
    report.seconds = time.perf_counter() - started
    return report


def image_record(storage: Storage, key: str, rules: IngestRules) -> ImageRecord:
    """The catalog record of the JPEG at ``key``, read with one ranged GET of its start for most images.

    An unreadable header gives a record with ``status='failed'`` and the reason, as :func:`ingest` records it;
    a missing object raises :class:`~panopipe.errors.ObjectNotFoundError`.
    """
    before = storage.stats.get(key).bytes_read
    first, info = storage.read_start(key, HEADER_CHUNK)
    read = _read_remote(storage, info, first)
    read = replace(read, bytes_read=storage.stats.get(key).bytes_read - before)
    pattern = path_pattern(rules)
    return _records(_unstorable_reels([read], pattern), pattern, {}, {})[0]


def path_pattern(rules: IngestRules) -> re.Pattern[str]:
    """The compiled ``path_pattern`` of ``rules``; a :class:`~panopipe.errors.ConfigError` if it is invalid."""
    try:
        pattern = re.compile(rules.path_pattern)
    except re.error as exc:
        raise ConfigError(f"invalid ingest path_pattern {rules.path_pattern!r}: {exc}") from None
    unknown = set(pattern.groupindex) - {"reel", "frame", "camera"}
    if unknown:
        raise ConfigError(
            f"ingest path_pattern has unknown group(s) {sorted(unknown)}: use reel, frame, camera"
        )
    return pattern


class _Source(NamedTuple):
    storage: Storage
    uri_prefix: str
    """What the URIs of its files start with: a folder's or prefix's URI and ``/``, or the one file's URI."""
    listing: list[ObjectInfo]
    """Its JPEGs."""
    others: Counter[str]
    """How many other files it holds, by extension (hidden ones left out: ``.DS_Store`` and the like)."""
    outputs: Counter[str]
    """How many files it holds under panopipe's output roots, by root: in neither list."""
    unlisted: list[Unlisted]
    """What its listing could not look into (a folder's link whose target is missing)."""
    one_file: bool


def _list_source(source: str | Path, settings: Settings, own: tuple[str, ...]) -> _Source:
    """What ``source`` holds: a folder, an ``s3://`` prefix, or one file or S3 object; the files under the
    output prefixes ``own`` set apart."""
    text = str(source)
    location = local_path(text)
    if location is not None:
        path = location.expanduser()
        if path.is_file():
            if not path.name.lower().endswith(JPEG_SUFFIXES):  # as a folder's other files are not read
                raise ConfigError(
                    f"{text} is not a JPEG file (.jpg, .jpeg): give a folder, a JPEG file or an s3:// prefix"
                )
            folder = FolderStorage(path.parent)
            info = folder.listed(path.name)  # a bad name fails this file only, when it is read
            return _one_file(folder, info, own)
        if not path.is_dir():
            if (reason := missing_target(path)) is not None:
                raise ConfigError(f"{text} is {reason}")
            raise ConfigError(f"{text} does not exist: give a folder, a JPEG file or an s3:// prefix")
    storage = open_storage(text, settings)
    jpegs: list[ObjectInfo] = []
    others: Counter[str] = Counter()
    outputs: Counter[str] = Counter()
    unlisted: list[Unlisted] = []
    for entry in storage.scan():
        if isinstance(entry, Unlisted):
            unlisted.append(entry)
        elif root := _own_root(entry.uri, own):
            outputs[root] += 1
        elif entry.key.lower().endswith(JPEG_SUFFIXES):
            jpegs.append(entry)
        elif not PurePosixPath(entry.key).name.startswith("."):
            others[PurePosixPath(entry.key).suffix.lower()] += 1
    if location is None and not jpegs and not others and not outputs and not text.endswith("/"):
        bucket, key = resolve_uri(text, settings)
        try:
            single = bucket.head(key) if key else None  # s3://bucket/.../frame.jpg names one object
        except ObjectNotFoundError:
            single = None
        if single is not None:
            return _one_file(bucket, single, own)
    uri_prefix = storage.root_uri.rstrip("/") + "/"
    return _Source(storage, uri_prefix, jpegs, others, outputs, unlisted, one_file=False)


def _one_file(storage: Storage, info: ObjectInfo, own: tuple[str, ...]) -> _Source:
    """The source of the one file ``info`` lists: none to read when it is under one of the prefixes ``own``."""
    root = _own_root(info.uri, own)
    outputs = Counter([root] if root else [])
    return _Source(storage, info.uri, [] if root else [info], Counter(), outputs, [], one_file=True)


def _own_root(uri: str, own: tuple[str, ...]) -> str | None:
    """The first of the output prefixes ``own`` that ``uri`` is under (the outermost: they are sorted)."""
    return next((prefix for prefix in own if uri.startswith(prefix)), None)


def _not_looked_into(
    unlisted: list[Unlisted],
    known: Mapping[str, KnownFile],
    known_copies: Collection[str],
    own: tuple[str, ...],
    report: IngestReport,
) -> set[str]:
    """The catalogued files (images and copies) under what a source's listing could not look into
    (``unlisted``), which are not gone; each reported: one named as a JPEG as a failed file, another (a
    folder linked in) in :attr:`IngestReport.unlisted` with the images it keeps, but one with a hidden name
    that keeps none (as hidden files are not counted among those not read) or under the output prefixes
    ``own``."""
    unseen: set[str] = set()
    for entry in unlisted:
        under = [
            uri for uri in (*known, *known_copies) if uri == entry.uri or uri.startswith(f"{entry.uri}/")
        ]
        unseen.update(under)
        kept = sum(1 for uri in under if uri in known and not known[uri].deleted)
        if _own_root(entry.uri, own):
            continue
        if entry.key.lower().endswith(JPEG_SUFFIXES):
            report.failed.append(IngestFailure(shown_name(entry.uri), entry.reason))
        elif kept or not PurePosixPath(entry.key).name.startswith("."):
            report.unlisted.append(IngestUnlisted(shown_name(entry.uri), entry.reason, kept))
    return unseen


def _within(files: dict[str, _Known], uri_prefix: str, one_file: bool) -> dict[str, _Known]:
    """``files`` (by URI) of a source: of a one-file source, not those whose names start with its file's."""
    return {uri: file for uri, file in files.items() if uri == uri_prefix} if one_file else files


def _failed_before(catalog: Catalog, unchanged: set[str]) -> list[IngestFailure]:
    """The unchanged files of a source that the catalog holds as failed, with the reason recorded then."""
    if not unchanged:
        return []
    failed = catalog.images(Selection(status="failed"))
    return [IngestFailure(image.uri, image.error or "failed") for image in failed if image.uri in unchanged]


def _changed(known: KnownFile | None, info: ObjectInfo) -> bool:
    if known is None or known.deleted or known.size != info.size:
        return True
    if info.etag is not None:
        return known.etag != info.etag
    return known.modified_at != info.modified


@dataclass(slots=True)
class _Writer:
    """Writes the reads of one source's files to the catalog a chunk at a time (see :data:`COMMIT_FILES`), and
    at the end what needs the whole listing: the images whose files are gone, and the shots."""

    catalog: Catalog
    storage: Storage
    pattern: re.Pattern[str]
    tolerance_s: float
    workers: int | None
    report: IngestReport
    known: dict[str, KnownFile]
    known_copies: Collection[str]
    present: set[str]
    pending: set[str]
    """The URIs of the files to read, less those read so far."""
    vanished: dict[str, str] = field(init=False)
    """The ids of the images whose files are gone, by content hash: a file new here with it is the image's."""
    waiting: list[ImageRecord] = field(default_factory=list)
    """Records of files new here with the content the catalog has at a file not read yet (see
    :func:`_set_aside_duplicates`): written with the chunk that reads it."""
    waiting_reads: dict[str, _Read] = field(default_factory=dict)
    moved: set[str] = field(default_factory=set)
    """The ids of the images whose files moved: their URIs gone are not deleted."""
    reels: set[str | None] = field(default_factory=set)
    duplicates: list[IngestDuplicate] = field(default_factory=list)
    sizes: set[int] | None = None

    def __post_init__(self) -> None:
        self.vanished = {
            k.content_hash: k.id
            for uri, k in self.known.items()
            if uri not in self.present and k.content_hash
        }

    def write(self, reads: list[_Read]) -> None:
        """Write the records of ``reads`` (one chunk), with those that waited for these files, and count them."""
        reads = _unstorable_reels(reads, self.pattern)
        reads = _hash_likely_copies(self.storage, reads, self.known, self.workers, self.content_sizes)
        self.pending.difference_update(read.info.uri for read in reads)
        by_uri = {**self.waiting_reads, **{read.info.uri: read for read in reads}}
        records = [*self.waiting, *_records(reads, self.pattern, self.known, self.vanished)]
        aside = _set_aside_duplicates(self.catalog, records, self.known, self.pending)
        # the frames moved in time regrouped at once: an ingest stopped later leaves none in a shot it left
        result = self.catalog.upsert_images(
            aside.kept,
            absent={r.uri for r in aside.kept if r.uri not in self.known},
            shot_tolerance_s=self.tolerance_s,
        )
        copies_read = [read.info.uri for read in reads if read.info.uri in self.known_copies]
        _record_copies(self.catalog, aside.duplicates, aside.left_behind, by_uri, copies_read)
        self.waiting = aside.waiting
        self.waiting_reads = {r.uri: by_uri[r.uri] for r in aside.waiting}
        self.moved.update(r.id for r in aside.kept if r.id)
        self.reels.update(r.reel for r in aside.kept)
        self.duplicates += aside.duplicates
        # a file that could not be read is an image (status failed) but counts as failed, not added or updated
        failed = [r for r in aside.kept if r.status == "failed"]
        failed_known = {self.known[r.uri].id for r in failed if r.uri in self.known}
        self.report.added += len(result.added) - sum(1 for r in failed if r.uri not in self.known)
        self.report.updated += len(set(result.updated) - failed_known)
        self.report.unchanged += len(set(result.unchanged) - failed_known)
        self.report.failed += [IngestFailure(r.info.uri, r.error) for r in reads if r.error]
        self.report.files_read += len(reads)
        self.report.bytes_read += sum(r.bytes_read for r in reads)

    def finish(self, own: tuple[str, ...]) -> None:
        """Once every file is read (none waits then): forget the copies gone, mark the images whose files are
        gone deleted (but those under the output prefixes ``own``), and group the reels written into shots."""
        _record_copies(
            self.catalog, [], [], {}, [uri for uri in self.known_copies if uri not in self.present]
        )
        gone = (
            uri
            for uri, k in self.known.items()
            if uri not in self.present
            and not k.deleted
            and not uri.startswith(own)
            and k.id not in self.moved
        )
        self.report.deleted += len(self.catalog.mark_deleted(gone, shot_tolerance_s=self.tolerance_s))
        self.report.duplicates += sorted(self.duplicates, key=lambda d: d.uri)
        # and the reels that an ingest stopped before this left with frames in no shot (read unchanged now)
        self.catalog.assign_shots(self.reels, self.tolerance_s, unshot=True)

    def content_sizes(self) -> set[int]:
        """The sizes of the files whose content the catalog knew when first asked (one query)."""
        if self.sizes is None:
            self.sizes = self.catalog.content_sizes()
        return self.sizes


def _in_chunks(reads: Iterable[_Read]) -> Iterator[list[_Read]]:
    """``reads`` in lists of :data:`COMMIT_FILES`, or of those that came in :data:`COMMIT_S` if fewer."""
    chunk: list[_Read] = []
    began = time.monotonic()
    for read in reads:
        chunk.append(read)
        if len(chunk) >= COMMIT_FILES or time.monotonic() - began >= COMMIT_S:
            yield chunk
            chunk, began = [], time.monotonic()
    if chunk:
        yield chunk


def _read_all(
    storage: Storage, infos: list[ObjectInfo], workers: int | None, progress: Progress | None
) -> Iterator[_Read]:
    """The reads of ``infos`` as they are done, ``progress`` told of each; the next ones are read meanwhile."""
    for done, read in enumerate(_reads(storage, infos, workers), 1):
        if progress:
            progress(done, len(infos))
        yield read


def _reads(storage: Storage, infos: list[ObjectInfo], workers: int | None) -> Iterator[_Read]:
    executor: Executor
    reads: Iterator[_Read]
    if isinstance(storage, FolderStorage):
        workers = workers or os.cpu_count() or 1
        readable, paths = [], []
        for info in infos:
            try:
                paths.append(str(storage.path(info.key)))
            except StorageError as exc:  # a name no key may have (a control character): this file fails
                yield _Read(info, None, None, str(exc), 0)
            else:
                readable.append(info)
        if workers == 1 or len(paths) < 2:
            for info, path in zip(readable, paths, strict=True):
                yield _with_info(info, _read_local(path))
            return
        executor = ProcessPoolExecutor(workers, initializer=exit_with_parent)
        chunk = max(1, min(256, len(paths) // (workers * 4)))
        outcomes = executor.map(_read_local, paths, chunksize=chunk)
        reads = (_with_info(info, outcome) for info, outcome in zip(readable, outcomes, strict=True))
    else:
        executor = ThreadPoolExecutor(workers or CONCURRENT_REQUESTS)
        reads = executor.map(lambda info: _read_remote(storage, info), infos)
    try:
        yield from reads
    finally:  # an ingest stopped part-way does not wait for the files it has not begun reading
        executor.shutdown(cancel_futures=True)


_Outcome = tuple[ImageMetadata | None, str | None, str | None, int, bool]
"""What a worker process returns of a local read: :class:`_Read`'s fields after ``info``."""


def _with_info(info: ObjectInfo, outcome: _Outcome) -> _Read:
    return _Read(info, *outcome)


def _read_local(path: str) -> _Outcome:
    """Header metadata and SHA-256 of one local file (runs in a worker process).

    A file of up to :data:`ONE_READ` bytes is parsed and hashed from one read. A larger one has its header
    read first, so that a file which is no JPEG is refused from its first bytes, and the rest is hashed in
    chunks: memory does not grow with the file size.
    """
    try:
        with open(path, "rb") as handle:
            fd = handle.fileno()
            size = os.fstat(fd).st_size
            first = size if size <= ONE_READ else HEADER_CHUNK
            metadata, data = read_jpeg(lambda start, length: os.pread(fd, length, start), first, size=size)
            digest = hashlib.sha256(data)
            handle.seek(len(data))
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
    except MetadataError as exc:
        return None, None, str(exc), 0, False
    except OSError as exc:
        return None, None, f"cannot read: {exc.strerror}", 0, True
    return metadata, digest.hexdigest(), None, metadata.header_bytes, False


def _read_remote(storage: Storage, listed: ObjectInfo, first: bytes | None = None) -> _Read:
    """Header metadata of one object through ranged reads (``first``: its start, already read, with
    ``listed`` as that read told of it). Its content hash is the SHA-256 stored with the object (panopipe's
    uploads have one) if the object read is the one listed, else unknown: the ETag stands in."""
    stats_before = storage.stats.get(listed.key).bytes_read
    content_hash = listed.sha256
    try:
        if first is None:
            first, started = storage.read_start(listed.key, HEADER_CHUNK)
            content_hash = started.sha256 if started.etag == listed.etag else None
        head = first

        def read(start: int, length: int) -> bytes:
            if start + length <= len(head) or len(head) >= listed.size:
                return head[start : start + length]
            return storage.read_range(listed.key, start, length)

        metadata, _ = read_jpeg(read, HEADER_CHUNK, size=listed.size)
        if content_hash is None and len(head) >= listed.size:  # read whole: its content is known for free
            content_hash = hashlib.sha256(head).hexdigest()
        error, unreachable = None, False
    except MetadataError as exc:
        metadata, content_hash, error, unreachable = None, None, str(exc), False
    except StorageError as exc:
        metadata, content_hash, error, unreachable = None, None, str(exc), True
    bytes_read = storage.stats.get(listed.key).bytes_read - stats_before
    return _Read(listed, metadata, content_hash, error, bytes_read, unreachable)


def _hash_likely_copies(
    storage: Storage,
    reads: list[_Read],
    known: dict[str, KnownFile],
    workers: int | None,
    content_sizes: Callable[[], set[int]],
) -> list[_Read]:
    """``reads`` with the SHA-256 of each new object that has none (uploaded by another tool than panopipe,
    ``aws s3 cp`` say) and the size of a catalogued image's file: such an object is read whole, so that a
    copy of a catalogued file is known as one (a duplicate, or its image following its file to S3) instead
    of added as another image, which also split the shots of its reel. An object of another size holds no
    catalogued content: it costs no more than its header."""
    unhashed = [
        r for r in reads if r.metadata is not None and r.content_hash is None and r.info.uri not in known
    ]
    if not unhashed:
        return reads
    sizes = content_sizes()
    likely = {id(r) for r in unhashed if r.info.size in sizes}
    if not likely:
        return reads

    def hashed(read: _Read) -> _Read:
        if id(read) not in likely:
            return read
        try:
            digest, size = _object_sha256(storage, read.info)
        except StorageError:
            return read  # known by its header alone, as before
        return replace(read, content_hash=digest, bytes_read=read.bytes_read + size)

    with ThreadPoolExecutor(workers or CONCURRENT_REQUESTS) as threads:
        return list(threads.map(hashed, reads))


def _object_sha256(storage: Storage, info: ObjectInfo) -> tuple[str, int]:
    """The SHA-256 of the object ``info`` lists, read in chunks, and the bytes read."""
    digest, offset = hashlib.sha256(), 0
    while offset < info.size:
        chunk = storage.read_range(info.key, offset, ONE_READ)
        if not chunk:
            break
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest(), offset


def _records(
    reads: Iterable[_Read], pattern: re.Pattern[str], known: dict[str, KnownFile], vanished: dict[str, str]
) -> list[ImageRecord]:
    """The records of ``reads``; a file new to its source with the content of one of the images ``vanished``
    (id by content hash: their files gone) is that image's, which it takes from ``vanished``."""
    records = []
    for read in reads:
        if read.unreachable:
            continue  # reported, and read again next time: the file may be fine
        info = read.info
        moved_id = None
        if read.content_hash is not None and info.uri not in known:
            moved_id = vanished.pop(read.content_hash, None)
        record = ImageRecord(
            uri=info.uri,
            size=info.size,
            etag=info.etag,
            modified_at=info.modified,
            content_hash=read.content_hash,
            id=moved_id,
            **path_fields(pattern, info.uri),
        )
        if read.metadata is None:
            records.append(replace(record, status="failed", error=read.error))
        else:
            records.append(_with_metadata(record, read.metadata))
    return records


class _SetAside(NamedTuple):
    kept: list[ImageRecord]
    duplicates: list[IngestDuplicate]
    left_behind: list[FileCopy]
    """The local files that uploads left behind, as copies."""
    waiting: list[ImageRecord]
    """The records whose content the catalog holds at a file read later: it may hold other content now."""


def _set_aside_duplicates(
    catalog: Catalog, records: list[ImageRecord], known: dict[str, KnownFile], pending: Collection[str]
) -> _SetAside:
    """``records`` without the files whose content (SHA-256) an image not deleted has at another URI, those
    files as duplicates, and the local files that uploads left behind (as copies); the files whose content the
    catalog has at one of the files ``pending`` (read later) wait for it.

    Only files new to their source count. A file takes over such an image instead (its id, edits and jobs)
    when it is where the image's file went (see :func:`_moved`): a local file gone, as with a moved folder, or
    one uploaded to S3 (the local file, left behind, is a copy). An image on S3 is taken to be there: the
    capture folder it came from is a duplicate. A file with the content of a deleted image (its file gone)
    brings that image back. Of several new files with the same content, the first by URI is added.
    """
    new = sorted(
        (r.uri, r.content_hash) for r in records if r.content_hash and r.id is None and r.uri not in known
    )
    if not new:
        return _SetAside(records, [], [], [])
    catalogued = catalog.files_with_content(content_hash for _, content_hash in new)
    read_now = {r.uri: r.content_hash for r in records}
    # content hash -> the URI of the file of this ingest that is added with it, first those moved in the source
    first_with = {r.content_hash: r.uri for r in records if r.id and r.content_hash and r.uri not in known}
    duplicates: dict[str, str] = {}
    takes_over: dict[str, str] = {}
    left_behind: list[FileCopy] = []
    waiting: set[str] = set()
    for uri, content_hash in new:
        original = catalogued.get(content_hash)
        if original is not None and original.uri == uri:
            continue  # this very file, which an ingest running at once added meanwhile: no copy of itself
        if content_hash in first_with:
            duplicates[uri] = first_with[content_hash]
            continue
        if original is not None and original.uri in pending:
            waiting.add(uri)
            continue
        if original is not None and read_now.get(original.uri, content_hash) != content_hash:
            original = None  # its file was read again now and holds other content
        back = original is not None and original.uri in read_now  # its own file is read now
        if original is not None and (back or not (original.deleted or _moved(original.uri, uri))):
            duplicates[uri] = original.uri
        else:
            if original is not None:
                takes_over[uri] = original.id
                if (path := local_path(original.uri)) is not None and path.exists():
                    left_behind.append(
                        FileCopy(
                            original.uri,
                            uri,
                            content_hash,
                            original.size,
                            original.etag,
                            original.modified_at,
                        )
                    )
            first_with[content_hash] = uri
    kept = [
        replace(r, id=takes_over[r.uri]) if r.uri in takes_over else r
        for r in records
        if r.uri not in duplicates and r.uri not in waiting
    ]
    return _SetAside(
        kept,
        [IngestDuplicate(uri, original) for uri, original in duplicates.items()],
        left_behind,
        [r for r in records if r.uri in waiting],
    )


def _record_copies(
    catalog: Catalog,
    duplicates: list[IngestDuplicate],
    left_behind: list[FileCopy],
    reads: Mapping[str, _Read],
    forget: Collection[str],
) -> None:
    """Record the ``duplicates`` (whose ``reads`` are by URI) as copies of their originals, and the files
    ``left_behind``; forget the known copies at ``forget`` (read again, or gone)."""
    copies = [
        FileCopy(d.uri, d.original_uri, read.content_hash, read.info.size, read.info.etag, read.info.modified)
        for d in duplicates
        if (read := reads[d.uri]).content_hash is not None
    ]
    if copies or left_behind or forget:
        catalog.record_copies([*copies, *left_behind], forget=forget)


def _moved(original_uri: str, uri: str) -> bool:
    """Whether a file at ``uri`` with the content of the image at ``original_uri`` is where that image's file
    is now: the image's file is a local one that is gone, or that was uploaded to S3 (the catalog follows a
    file to S3, as ``panopipe sync`` and the event handler point it there)."""
    path = local_path(original_uri)
    return path is not None and (local_path(uri) is None or not path.exists())


class PathFields(TypedDict, total=False):
    """The fields a file's path gives its image."""

    reel: str
    frame: int
    camera_index: int


def path_fields(pattern: re.Pattern[str], uri: str) -> PathFields:
    """The reel, frame and camera index that ``pattern`` (see :func:`path_pattern`) reads from ``uri``; a
    value the catalog cannot hold is none (the digits of ``IMG20240501083000.jpg`` are no frame counter)."""
    match = pattern.search(uri)
    if match is None:
        return {}
    groups = match.groupdict()
    found = {
        field: int(text) if field != "reel" else text
        for field, text in (
            ("reel", groups.get("reel")),
            ("frame", groups.get("frame")),
            ("camera_index", groups.get("camera")),
        )
        if text
    }
    fields: dict[str, str | int] = {}
    for name, value in found.items():
        try:
            fields[name] = validate_value(name, value)
        except ConfigError:
            continue
    return cast(PathFields, fields)


def _unstorable_reels(reads: list[_Read], pattern: re.Pattern[str]) -> list[_Read]:
    """``reads``, those of files whose reel folder name (as ``pattern`` reads it) the catalog cannot hold
    failed with the reason: recorded without their reel, they would be taken for images of no reel."""
    return [
        replace(read, metadata=None, error=reason)
        if not read.unreachable and (reason := _unstorable_reel(pattern, read.info.uri))
        else read
        for read in reads
    ]


def _unstorable_reel(pattern: re.Pattern[str], uri: str) -> str | None:
    """Why the catalog cannot hold the reel ``pattern`` reads from ``uri`` (its length), or ``None``."""
    match = pattern.search(uri)
    reel = match.groupdict().get("reel") if match else None
    try:
        validate_value("reel", reel)
    except ConfigError as exc:
        return f"its reel folder name is too long ({exc}): shorten it"
    return None


def unstorable_uri(uri: str) -> str | None:
    """Why the catalog cannot hold an image at ``uri`` (its length, or bytes that are not UTF-8), or ``None`` if
    it can."""
    if not is_utf8(uri):
        return f"{NOT_UTF8}: rename the file"
    limit = text_limit("uri")
    assert limit is not None
    if len(uri) <= limit:
        return None
    return f"its path is longer than {limit} characters, the most the catalog holds: shorten it"


def _storable(listing: list[ObjectInfo]) -> tuple[list[ObjectInfo], list[IngestFailure]]:
    """The files of ``listing`` whose URI the catalog can hold, and the others as failures."""
    refused = {info.uri: reason for info in listing if (reason := unstorable_uri(info.uri))}
    if not refused:
        return listing, []
    failures = [IngestFailure(shown_name(uri), reason) for uri, reason in refused.items()]
    return [info for info in listing if info.uri not in refused], failures


def _with_metadata(record: ImageRecord, m: ImageMetadata) -> ImageRecord:
    return replace(
        record,
        captured_at=m.captured_at,
        utc_offset_minutes=m.utc_offset_minutes,
        lat=m.gps_latitude,
        lon=m.gps_longitude,
        alt=m.gps_altitude,
        gps_accuracy_m=m.gps_h_positioning_error,
        heading=m.gps_img_direction if m.gps_img_direction is not None else m.pose_heading,
        pitch=m.pose_pitch,
        roll=m.pose_roll,
        make=m.make,
        model=m.model,
        camera_serial=m.body_serial_number,
        width=m.width,
        height=m.height,
        projection=m.projection_type,
    )


__all__ = [
    "COMMIT_FILES",
    "COMMIT_S",
    "HASH_CHUNK",
    "HEADER_CHUNK",
    "JPEG_SUFFIXES",
    "ONE_READ",
    "IngestDuplicate",
    "IngestFailure",
    "IngestReport",
    "IngestUnlisted",
    "PathFields",
    "Progress",
    "image_record",
    "ingest",
    "path_fields",
    "path_pattern",
    "unstorable_uri",
]
