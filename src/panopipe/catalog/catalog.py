"""The Catalog API: one interface over SQLite and PostgreSQL for images and edits, and the transactions that
other tables' owners (the pipeline's job store) work in."""

from __future__ import annotations

import contextlib
import itertools
import operator
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa

from panopipe.catalog import edits as edit_ops
from panopipe.catalog import file_copies as copy_ops
from panopipe.catalog import flags as flag_ops
from panopipe.catalog import project_config as config_ops
from panopipe.catalog import routes as route_ops
from panopipe.catalog import selection as selection_ops
from panopipe.catalog import short_ids
from panopipe.catalog.bulk import FEW_ROWS, insert_columns
from panopipe.catalog.columns import read_columns
from panopipe.catalog.engine import catalog_location, checked_engine, database_errors, mask_url
from panopipe.catalog.object_events import AppliedChange, ObjectChange, OnRemoved, apply_changes, mark_deleted
from panopipe.catalog.project_config import ConfigVersion
from panopipe.catalog.records import (
    CAPTURE_FIELDS,
    FILE_FIELDS,
    IMAGE_COLUMNS,
    Edit,
    EditBatch,
    FieldChange,
    Image,
    ImageRecord,
    UpsertResult,
)
from panopipe.catalog.schema import edits, images
from panopipe.catalog.selection import Selection, sort_order
from panopipe.catalog.shots import assign_reel_shots, regroup_applied, shot_reel, unshot_reels
from panopipe.catalog.spatial import PostGIS, detect_postgis
from panopipe.catalog.subjects import subject_id
from panopipe.catalog.types import new_ids, utcnow
from panopipe.catalog.values import from_json, to_json
from panopipe.config import Settings, config_path
from panopipe.errors import CatalogError, ConfigError, NotFoundError
from panopipe.iterutil import batched, evenly, spaced
from panopipe.storage.folder import local_uris, refuse_database_file, same_file

_COMPARED_FIELDS = (*FILE_FIELDS, *CAPTURE_FIELDS, "extra", "status", "error")
_WRITTEN_FIELDS = (*_COMPARED_FIELDS, "uri")
_read_written = operator.attrgetter(*_WRITTEN_FIELDS)
_EXISTING_COLUMNS = tuple(images.c[name] for name in ("id", "captured", "deleted", *_WRITTEN_FIELDS))
_EXISTING_WRITTEN = slice(3, 3 + len(_WRITTEN_FIELDS))  # the written fields of an existing row
_SHOT_INPUTS = ("captured_at", "reel", "frame", "camera_index", "status")
"""The written fields a frame's shot depends on (see :func:`~panopipe.catalog.shots.assign_reel_shots`)."""
_KNOWN_FILE_COLUMNS = tuple(
    images.c[name] for name in ("id", "uri", "size", "modified_at", "content_hash", "etag", "deleted")
)
"""The columns of a :class:`KnownFile`, in its fields' order."""


def _compare(
    records: Iterable[ImageRecord], by_uri: Mapping[str, Any], by_id: Mapping[str, Any], now: datetime
) -> tuple[list[ImageRecord], list[dict[str, Any]], list[str]]:
    """The records without a row (by id when they have one, else by URI), the updates of the rows that differ
    from their record (edited fields keep their edited value, the record's going underneath for undo), and
    the ids of the rows that do not."""
    new: list[ImageRecord] = []
    updates: list[dict[str, Any]] = []
    unchanged: list[str] = []
    for record in records:
        row = by_id.get(record.id) if record.id else None
        row = row or by_uri.get(record.uri)
        if row is None:
            new.append(record)
            continue
        written = _read_written(record)
        if not row.captured and tuple(row)[_EXISTING_WRITTEN] == written and not row.deleted:
            unchanged.append(row.id)
            continue
        values = dict(zip(_WRITTEN_FIELDS, written, strict=True))
        captured = dict(row.captured or {})
        current = {name: getattr(row, name) for name in _WRITTEN_FIELDS}
        overridden = [name for name in captured if name in values]
        for name in overridden:
            current[name] = from_json(name, captured[name])
        if current == values and not row.deleted:
            unchanged.append(row.id)
            continue
        for name in overridden:
            captured[name] = to_json(name, values[name])
            values[name] = getattr(row, name)
        updates.append(
            {**values, "_id": row.id, "captured": captured or None, "deleted": False, "updated_at": now}
        )
    return new, updates, unchanged


def _insert_images(conn: sa.Connection, columns: Mapping[str, Sequence[Any]]) -> int:
    """Insert images (given by column); a row whose URI another transaction took since it was looked up is
    skipped, not an error: the number of rows inserted."""
    if conn.dialect.name == "postgresql" and len(columns["uri"]) >= FEW_ROWS:
        # COPY, the fast way, knows no ON CONFLICT (skipping conflicts costs a temporary table): tried first in
        # a savepoint, then again skipping the URIs taken if another writer took one.
        try:
            with conn.begin_nested():
                return insert_columns(conn, images, columns)
        except sa.exc.IntegrityError:
            pass
    return insert_columns(conn, images, columns, skip_conflicts=("uri",))


@dataclass(frozen=True, slots=True)
class KnownFile:
    """What the catalog already knows about a file, enough to tell whether it changed without reading it."""

    id: str
    uri: str
    size: int | None
    modified_at: datetime | None
    content_hash: str | None
    etag: str | None
    deleted: bool


@dataclass(frozen=True, slots=True)
class KnownCopy:
    """A file known to hold the content of an image elsewhere: what tells whether it changed (its ``id`` is the
    image's), and where the image's own file is."""

    file: KnownFile
    image_uri: str


@dataclass(frozen=True, slots=True)
class FileLocation:
    """Where an image's file is now, with what tells whether it changes there (as :class:`KnownFile`)."""

    uri: str
    size: int | None = None
    modified_at: datetime | None = None
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class MapPositions:
    """``(lon, lat)`` of images to draw on a map, at most as many as asked for in all: ``points`` and
    ``flagged`` (those of the images in given subjects) each evenly thinned, out of ``total`` images with a
    position, ``flagged_total`` of them flagged."""

    points: list[tuple[float, float]]
    flagged: list[tuple[float, float]]
    total: int
    flagged_total: int

    @property
    def sampled(self) -> bool:
        """Whether some images are left out."""
        return len(self.points) + len(self.flagged) < self.total


class Catalog:
    """The metadata catalog. Open it with :meth:`open`; use it as a context manager to close it."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    @classmethod
    def open(cls, location: str | Path, *, create: bool = True, settings: Settings | None = None) -> Self:
        """Open the catalog at ``location`` (a path for SQLite or a database URL; a ``cloudformation://``
        stack's is looked up with ``settings``' region and profile).

        An empty database gets the schema when ``create`` is true. A catalog at an older schema raises
        :class:`~panopipe.errors.SchemaOutdatedError` saying to run ``panopipe db upgrade``.
        """
        return cls(checked_engine(location, create=create, settings=settings))

    @cached_property
    def postgis(self) -> PostGIS | None:
        """The spatial conditions of a catalog with PostGIS's ``images.geom``, else ``None`` (looked up once)."""
        with self.connect() as conn:
            return detect_postgis(conn)

    @property
    def url(self) -> str:
        """The catalog's URL with any password masked."""
        return mask_url(self.engine.url)

    @property
    def location(self) -> str:
        """Where the catalog is, as a user writes it: a SQLite file's path, else the masked URL."""
        return catalog_location(self.engine.url)

    @property
    def folder(self) -> Path | None:
        """The folder of a SQLite catalog's file; ``None`` for a database server or an in-memory catalog."""
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            return Path(url.database).parent
        return None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A connection in a transaction, committed at the end (rolled back on an error); database errors are
        raised as the :class:`~panopipe.errors.CatalogError` that says what to do
        (:func:`~panopipe.catalog.engine.database_error`). Every statement of a catalog runs in this,
        :meth:`autocommit` or :meth:`connect`."""
        with database_errors(self.engine.url), self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def autocommit(self) -> Iterator[sa.Connection]:
        """A connection whose statements each commit on their own, for reads and writes that need no
        transaction together (the planner's): on PostgreSQL in autocommit mode, which saves a BEGIN and a
        COMMIT round trip; elsewhere in one transaction committed at the end. Database errors are raised as
        :class:`~panopipe.errors.CatalogError`."""
        if self.engine.dialect.name != "postgresql":
            with self.transaction() as conn:
                yield conn
            return
        with database_errors(self.engine.url), self.engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    @contextlib.contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A connection for reading; database errors are raised as :class:`~panopipe.errors.CatalogError`."""
        with database_errors(self.engine.url), self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        """Release the catalog's connections."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Images

    def upsert_images(
        self,
        records: Iterable[ImageRecord],
        *,
        chunk_size: int = 5000,
        absent: Collection[str] = (),
        shot_tolerance_s: float | None = None,
    ) -> UpsertResult:
        """Insert new images and update changed ones, matched by ``id`` when given, else by URI.

        Idempotent: records identical to what the catalog holds change nothing. Fields overridden by edits
        keep their edited value; the new captured value is kept underneath for undo. All in one transaction
        (on SQLite, other writers wait while ``records`` is iterated). ``absent`` are URIs the caller found
        without an image (a listing's new files): not looked up again (one that another writer gave an image
        since is compared with its record all the same). With ``shot_tolerance_s``, the frames around those it
        updated with another capture time, reel, frame, camera or status (or brought back) are grouped into
        shots again in the same transaction; the frames it adds are left in none (see :meth:`assign_shots`).
        """
        added: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        with self.transaction() as conn:
            # Into an empty catalog only this call's own rows can match: look up only records that may.
            inserted: set[str] | None = (
                None if conn.execute(sa.select(images.c.id).limit(1)).first() else set()
            )
            regroup: dict[str | None, dict[str, datetime | None]] | None = (
                None if shot_tolerance_s is None else {}
            )
            for chunk in batched(records, chunk_size):
                a, u, n = self._upsert_chunk(conn, chunk, {}, inserted, absent=absent, regroup=regroup)
                added += a
                updated += u
                unchanged += n
            if shot_tolerance_s is not None and regroup:
                for reel, frames in regroup.items():
                    assign_reel_shots(conn, reel, shot_tolerance_s, frames)
        return UpsertResult(tuple(added), tuple(updated), tuple(unchanged))

    def _upsert_in(
        self,
        conn: sa.Connection,
        records: Sequence[ImageRecord],
        added_values: Mapping[str, Mapping[str, Any]],
        locked: Mapping[str, Any] | None,
    ) -> UpsertResult:
        """:meth:`upsert_images` inside the caller's transaction on ``conn`` (e.g. while it holds a row lock).

        ``added_values`` are more columns for the images it adds, by URI (the columns of the first for all),
        such as the S3 event a new image comes from. ``locked``, unless ``None``, are the rows of the records'
        URIs (read with ``_EXISTING_COLUMNS`` first) that ``conn``'s transaction holds locked, so that they
        need not be read again; a URI without a row has no image.
        """
        added, updated, unchanged = self._upsert_chunk(conn, records, added_values, None, locked)
        return UpsertResult(tuple(added), tuple(updated), tuple(unchanged))

    def apply_object_events(
        self,
        changes: Sequence[ObjectChange] | Callable[[], Sequence[ObjectChange]],
        *,
        uris: Collection[str] = (),
        on_removed: OnRemoved | None = None,
        shot_tolerance_s: float | None = None,
    ) -> list[AppliedChange | None]:
        """Apply object events (S3 creations and removals) in order and idempotently, across concurrent
        handlers; per change what it did, ``None`` for one not applied as an earlier change of its group failed.

        All in one transaction, or one transaction per change if that fails, unless the catalog refuses the
        writes (locked, read-only, full, unreachable): then every change fails at once with the line that says so
        (see :mod:`~panopipe.catalog.object_events`). ``changes`` may be a function that returns them once they are
        ready (e.g. once their objects are read): on PostgreSQL the batch's transaction is begun and the rows
        at ``uris`` (those the changes may have) are read and locked meanwhile. ``on_removed`` runs in the
        transaction that removes images, with their ids and the shots left without frames (the job store
        orphans their artifacts). With ``shot_tolerance_s``, the shots of the reels the events changed are
        regrouped in the same transaction (see :func:`~panopipe.catalog.shots.regroup_applied`; after the
        one-by-one fallback, in each change's).
        """
        then = None
        if shot_tolerance_s is not None:
            tolerance_s = shot_tolerance_s
            then = lambda conn, applied: regroup_applied(conn, applied, tolerance_s)  # noqa: E731
        return apply_changes(
            self.engine, changes, self._upsert_in, _EXISTING_COLUMNS, on_removed, then, uris=uris
        )

    def _upsert_chunk(
        self,
        conn: sa.Connection,
        chunk: Sequence[ImageRecord],
        added_values: Mapping[str, Mapping[str, Any]],
        inserted: set[str] | None,
        locked: Mapping[str, Any] | None = None,
        absent: Collection[str] = (),
        regroup: dict[str | None, dict[str, datetime | None]] | None = None,
    ) -> tuple[list[str], list[str], list[str]]:
        """Upsert ``chunk``; ``inserted``, unless ``None``, holds the only URIs and ids the catalog has (and
        gets those this chunk adds); ``locked``, unless ``None``, holds the rows of ``chunk``'s URIs (see
        :meth:`_upsert_in`); the URIs ``absent`` are not looked up (see :meth:`upsert_images`); ``regroup``,
        unless ``None``, gets the frames updated with other values of what their shot depends on (by reel, with
        their capture times), and those brought back.

        A URI that another transaction gives an image after it was looked up (an ingest of the same files at
        once) is not an error: that row is compared with the record and updated as if it had been found."""
        extra = tuple(next(iter(added_values.values()), {}))
        latest = {record.uri: record for record in chunk}
        ids = [r.id for r in latest.values() if r.id]
        existing_by_uri: dict[str, Any] = {}
        existing_by_id: dict[str, Any] = {}
        if locked is not None:
            existing_by_uri = {uri: row for uri in latest if (row := locked.get(uri)) is not None}
            existing_by_id = {row.id: row for row in existing_by_uri.values()}
        elif inserted is None or not (inserted.isdisjoint(latest) and inserted.isdisjoint(ids)):
            uris = [uri for uri in latest if uri not in absent]
            looked_up = [
                column.in_(keys) for column, keys in ((images.c.uri, uris), (images.c.id, ids)) if keys
            ]
            if looked_up:
                for found in conn.execute(sa.select(*_EXISTING_COLUMNS).where(sa.or_(*looked_up))):
                    existing_by_uri[found.uri] = found
                    existing_by_id[found.id] = found
        now = utcnow()
        if existing_by_uri:
            new, updates, unchanged = _compare(latest.values(), existing_by_uri, existing_by_id, now)
        else:
            new, updates, unchanged = list(latest.values()), [], []
        fresh_ids = iter(new_ids(len(new)))
        added = [r.id or next(fresh_ids) for r in new]
        if new:
            # Built by column: the driver path takes columns, and attrgetter over records runs at C speed.
            columns: dict[str, Sequence[Any]] = dict(
                zip(_WRITTEN_FIELDS, zip(*map(_read_written, new), strict=True), strict=True)
            )
            columns.update(id=added, ingested_at=[now] * len(new), updated_at=[now] * len(new))
            columns.update({name: [added_values.get(r.uri, {}).get(name) for r in new] for name in extra})
            if _insert_images(conn, columns) < len(new):
                # Another writer gave some of these URIs an image since they were looked up: its rows are
                # compared with the records as rows found would have been.
                ours = dict(zip(columns["uri"], added, strict=True))
                query = sa.select(*_EXISTING_COLUMNS).where(images.c.uri.in_(list(ours)))
                taken = {row.uri: row for row in conn.execute(query) if row.id != ours[row.uri]}
                existing_by_id.update((row.id, row) for row in taken.values())
                added = [image_id for uri, image_id in ours.items() if uri not in taken]
                _, more_updates, more_unchanged = _compare((latest[uri] for uri in taken), taken, {}, now)
                updates += more_updates
                unchanged += more_unchanged
            if inserted is not None:
                inserted.update(columns["uri"], added)
        if regroup is not None:
            for update in updates:
                row = existing_by_id[update["_id"]]
                if row.deleted or any(update[name] != getattr(row, name) for name in _SHOT_INPUTS):
                    regroup.setdefault(update["reel"], {})[update["_id"]] = update["captured_at"]
        if updates:
            conn.execute(
                images.update()
                .where(images.c.id == sa.bindparam("_id"))
                .values({name: sa.bindparam(name) for name in updates[0] if name != "_id"}),
                updates,
            )
        return added, [row["_id"] for row in updates], unchanged

    def known_files(self, uri_prefix: str = "") -> dict[str, KnownFile]:
        """Every image whose URI starts with ``uri_prefix``, by URI, with what tells if its file changed."""
        c = images.c
        query = sa.select(*_KNOWN_FILE_COLUMNS)
        if uri_prefix:
            query = query.where(c.uri.startswith(uri_prefix, autoescape=True))
        with self.connect() as conn:
            return {row.uri: KnownFile(*row) for row in conn.execute(query)}

    def files_with_content(self, content_hashes: Iterable[str]) -> dict[str, KnownFile]:
        """The images whose file had one of ``content_hashes`` (SHA-256), by hash; of several with the same
        content, the first by URI of those not deleted, else of the deleted ones."""
        c = images.c
        query = sa.select(*_KNOWN_FILE_COLUMNS)
        found: dict[str, KnownFile] = {}
        with self.connect() as conn:
            for chunk in batched(set(content_hashes), 2000):
                rows = conn.execute(query.where(c.content_hash.in_(chunk)))
                for row in sorted(rows, key=lambda row: (row.deleted, row.uri)):
                    found.setdefault(row.content_hash, KnownFile(*row))
        return found

    def content_sizes(self) -> set[int]:
        """The sizes of the files whose content (SHA-256) the catalog knows, deleted images' too: a file of
        another size holds none of them (one query)."""
        c = images.c
        query = sa.select(c.size).where(c.content_hash.is_not(None)).distinct()
        with self.connect() as conn:
            return set(conn.execute(query).scalars())

    def known_copies(self, uri_prefix: str) -> dict[str, KnownCopy]:
        """The files under ``uri_prefix`` known to hold the content of an image elsewhere (see
        :mod:`~panopipe.catalog.file_copies`), by URI."""
        with self.connect() as conn:
            return {
                row.uri: KnownCopy(
                    KnownFile(row.image_id, row.uri, row.size, row.modified_at, None, row.etag, False),
                    row.image_uri,
                )
                for row in copy_ops.known(conn, uri_prefix)
            }

    def copies_of(self, image_uris: Sequence[str]) -> dict[str, list[str]]:
        """The URIs of the known copies of the images at ``image_uris`` (not deleted), by image URI (one query
        per thousand URIs; none for none); database errors are raised as :class:`~panopipe.errors.CatalogError`."""
        if not image_uris:
            return {}
        with self.connect() as conn:
            return copy_ops.of_images_at(conn, image_uris)

    def record_copies(self, copies: Sequence[copy_ops.FileCopy], *, forget: Iterable[str] = ()) -> None:
        """Record ``copies`` of images' files, and forget those at ``forget`` (gone, or read again)."""
        with self.transaction() as conn:
            copy_ops.forget(conn, forget)
            copy_ops.record(conn, copies)

    def mark_deleted(self, uris: Iterable[str], *, shot_tolerance_s: float | None = None) -> list[str]:
        """Mark the images at ``uris`` deleted, their records, edits and shots kept, as object events do (see
        :func:`~panopipe.catalog.object_events.mark_deleted`); the ids affected. With ``shot_tolerance_s``, the
        frames left in their reels are grouped into shots again in the same transaction (a stray frame gone, the
        shot it split is whole again)."""
        with self.transaction() as conn:
            marked = mark_deleted(conn, images.c.uri, list(uris))
            if shot_tolerance_s is not None:
                for reel in {row.reel for row in marked}:
                    assign_reel_shots(conn, reel, shot_tolerance_s)
        return [row.id for row in marked]

    def relocate(self, moves: Mapping[str, FileLocation]) -> list[str]:
        """Point images at their files' new locations (``{old URI: new location}``), keeping their ids,
        metadata and edits, so that an ingest of the new location reads nothing again; the files at the old
        URIs are recorded as copies, so that an ingest of them does not either.

        An image whose new URI another image has already (a copy uploaded there by another tool and catalogued,
        say) stays where it is; their old URIs are returned. Tried again once if a concurrent writer (the event
        handler, taking an uploaded image over) wrote the same rows first.
        """
        for attempt in (1, 2):
            try:
                with self.transaction() as conn:
                    return self._relocate(conn, moves)
            except CatalogError as exc:
                if attempt == 2 or not isinstance(exc.__cause__, sa.exc.IntegrityError):
                    raise
        raise AssertionError("unreachable")

    def _relocate(self, conn: sa.Connection, moves: Mapping[str, FileLocation]) -> list[str]:
        c = images.c
        held = self._uris_in(conn, [new.uri for old, new in moves.items() if new.uri != old])
        stay = self._uris_in(conn, [old for old, new in moves.items() if new.uri in held and new.uri != old])
        params = [
            {"old": old, "uri": new.uri, "size": new.size, "modified_at": new.modified_at, "etag": new.etag}
            for old, new in moves.items()
            if old not in stay
        ]
        # The files left behind hold the images' content: an ingest of them need not read them.
        copy_ops.record_images_files(
            conn, [old for old, new in moves.items() if old not in stay and new.uri != old]
        )
        if params:
            written = ("uri", "size", "modified_at", "etag")
            conn.execute(
                images.update()
                .where(c.uri == sa.bindparam("old"))
                .values({name: sa.bindparam(name) for name in written} | {"updated_at": utcnow()}),
                params,
            )
        return sorted(stay)

    def refuse_overwrite(self, path: Path) -> None:
        """:class:`ConfigError` when writing ``path`` would replace a file the project works from: a file of
        the SQLite catalog, the config file in use or an image the catalog holds (links resolved)."""
        refuse_database_file(path, self.location if self.folder else None)
        config = config_path()
        if config.exists() and same_file(path, config):
            raise ConfigError(f"cannot write {path}: it is the config file in use; give another name")
        with self.connect() as conn:
            if self._uris_in(conn, local_uris(path)):
                raise ConfigError(f"cannot write {path}: it is an image of the catalog; give another name")

    @staticmethod
    def _uris_in(conn: sa.Connection, uris: Sequence[str]) -> set[str]:
        """Those of ``uris`` that images have."""
        found: set[str] = set()
        for chunk in batched(uris, 2000):
            found.update(conn.execute(sa.select(images.c.uri).where(images.c.uri.in_(chunk))).scalars())
        return found

    def images(
        self,
        selection: Selection | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        sort: Sequence[str] = (),
    ) -> Iterator[Image]:
        """The selected images with their effective metadata, ordered by the fields ``sort`` (``-field``
        descending), then by reel, capture time and URI; ``offset`` images skipped, at most ``limit``."""
        selection = selection or Selection()
        query = (
            sa.select(*(images.c[name] for name in IMAGE_COLUMNS), images.c.captured)
            .where(*selection.where(self.postgis))
            .order_by(*sort_order(sort))
        )
        # Distance from --near is tested here, not in SQL, so that one pages after that test.
        page = (offset, None if limit is None else offset + limit) if selection.near else (0, None)
        if selection.near is None:
            query = query.limit(limit).offset(offset)
        with self.connect() as conn:
            rows = (row for row in conn.execute(query) if selection.matches(row))
            page_rows = itertools.islice(rows, *page)
            if not flag_ops.any_flags(conn):
                yield from map(_image, page_rows)
                return
            for chunk in batched(page_rows, flag_ops.CHUNK):
                found = flag_ops.of_images(conn, [row.id for row in chunk])
                for row in chunk:
                    yield _image(row, found.get(row.id, ()))

    def columns(
        self, selection: Selection | None = None, fields: Sequence[str] = ("id",), *, sort: Sequence[str] = ()
    ) -> dict[str, list[Any]]:
        """Only ``fields`` of the selected images, ordered as :meth:`images` orders them, as one list per field:
        ids as their 32 hex digits, timestamps as POSIX seconds (float). For bulk work over many images (``panopipe qc``):
        no per-value conversion, many times faster than :meth:`images`."""
        postgis = self.postgis
        with self.connect() as conn:
            return read_columns(conn, selection or Selection(), fields, sort=sort, postgis=postgis)

    def count(self, selection: Selection | None = None) -> int:
        """How many images the selection holds."""
        selection = selection or Selection()
        if selection.near is not None:
            return sum(1 for _ in self.images(selection))
        with self.connect() as conn:
            query = sa.select(sa.func.count()).select_from(images).where(*selection.where(self.postgis))
            return conn.execute(query).scalar_one()

    def unknown_names(self, selection: Selection) -> list[selection_ops.UnknownName]:
        """The reels and shots ``selection`` names that no image has, each unknown reel with the closest known
        one (:func:`~panopipe.catalog.selection.unknown_names`)."""
        if not selection.reels and not selection.shots:
            return []
        with self.connect() as conn:
            return selection_ops.unknown_names(conn, selection)

    def no_match(self, selection: Selection, what: str = "the selection") -> str:
        """What to say when ``selection`` holds no image: the reels and shots it names that no image has (each
        unknown reel with the closest known one), how to look (:func:`~panopipe.catalog.selection.no_match`),
        and :meth:`swapped_hint`."""
        with self.connect() as conn:
            found = selection_ops.no_match(conn, selection, what)
        hint = self.swapped_hint(selection)
        return f"{found}; {hint}" if hint else found

    def swapped_hint(self, selection: Selection) -> str | None:
        """When ``selection`` holds no image but would with the coordinates of its ``--bbox`` or ``--near`` the
        other way round (:meth:`Selection.swapped`), a line that says so; else ``None``."""
        swapped = selection.swapped()
        if swapped is None or not (found := self.count(swapped)):
            return None
        return (
            f"with longitude and latitude the other way round it selects {found} image(s): --bbox takes "
            "MINLON,MINLAT,MAXLON,MAXLAT and --near LAT,LON"
        )

    def get(self, image_id: str) -> Image:
        """The image with id ``image_id``: its full id or its short id (see :mod:`~panopipe.catalog.short_ids`).

        Raises :class:`~panopipe.errors.NotFoundError` for an id no image has, or one several share (listing them).
        """
        columns = (*(images.c[name] for name in IMAGE_COLUMNS), images.c.captured)
        with self.connect() as conn:
            found = short_ids.resolve(conn, images.c.id, image_id, "image")
            row = conn.execute(sa.select(*columns).where(images.c.id == found)).one()
        return _image(row, self.flags_of(row.id))

    def shot_or_image(self, given: str) -> Selection | Image:
        """The shot named ``given`` (a selection of its frames), else the image whose full or short id it is.

        Raises :class:`~panopipe.errors.NotFoundError` when neither is in the catalog; for a name written as a
        shot's (``R001-000099``), that there is no such shot, and how to find the reel's shots, or the known reel
        closest to its reel."""
        shot = Selection(shots=(given,))
        if not self.unknown_names(shot):
            return shot
        try:
            return self.get(given)
        except NotFoundError as exc:
            reel = shot_reel(given)
            if reel is None:
                raise NotFoundError(
                    f"{exc}; nor is it a rig shot's id, such as R001-000042 (`panopipe ls --fields id,shot` "
                    "lists both)"
                ) from None
        unknown = self.unknown_names(Selection(reels=(reel,)))
        look = f"; {unknown[0].describe()}" if unknown else f": `panopipe ls --reel {reel}` lists its shots"
        raise NotFoundError(f"no shot {given!r} in the catalog{look}") from None

    def resolve_ids(self, selection: Selection) -> Selection:
        """``selection`` with each of its ids, full or short (as ``ls`` shows them), replaced by the full id of the
        one image it names; a :class:`~panopipe.errors.NotFoundError` for an id no image has or several share."""
        if not selection.ids:
            return selection
        with self.connect() as conn:
            full = tuple(short_ids.resolve(conn, images.c.id, given, "image") for given in selection.ids)
        return replace(selection, ids=full)

    def short_ids(self, image_ids: Sequence[str]) -> dict[str, str]:
        """The short id of each of ``image_ids``: the shortest start (at least 8 characters) of the last group
        of its UUID that no other image shares (see :mod:`~panopipe.catalog.short_ids`)."""
        with self.connect() as conn:
            return short_ids.short_ids(conn, images.c.id, image_ids)

    # Flags

    def flags_of(self, image_id: str) -> list[flag_ops.StoredFlag]:
        """The ``panopipe qc`` flags of one image (by its full id), by flag name."""
        with self.connect() as conn:
            return flag_ops.of_images(conn, [image_id]).get(image_id, [])

    def flag_names(self, image_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """The names of the ``panopipe qc`` flags of ``image_ids`` (full ids), by id, of those that have any."""
        with self.connect() as conn:
            if not flag_ops.any_flags(conn):
                return {}
            found = flag_ops.of_images(conn, image_ids)
        return {image_id: tuple(flag.flag for flag in flags) for image_id, flags in found.items()}

    def record_qc(
        self,
        image_ids: Collection[str],
        names: Collection[str],
        found: Sequence[flag_ops.Flag],
        *,
        run: str,
        qc_version: str,
        changes: Sequence[FieldChange] = (),
        reason: str = "",
        author: str = "",
    ) -> str | None:
        """Replace the flags ``names`` of ``image_ids`` with ``found`` and, with ``changes``, record them as one
        edit batch, all in one transaction; the batch id, if any."""
        with self.transaction() as conn:
            flag_ops.replace(conn, image_ids, names, found, run=run, qc_version=qc_version)
            return edit_ops.apply(conn, changes, reason=reason, author=author) if changes else None

    # Routes

    def add_route(self, route: route_ops.Route, *, replace: bool = False) -> int:
        """Store a centerline; with ``replace``, over the one of that name, clearing the images located on it
        (they must be located again). How many images were cleared."""
        with self.transaction() as conn:
            return route_ops.add(conn, route, replace=replace)

    def route(self, name: str | None = None) -> route_ops.Route:
        """The route ``name``, or the only route when ``name`` is ``None``."""
        with self.connect() as conn:
            return route_ops.get(conn, name)

    def record_locations(
        self,
        image_ids: Collection[str],
        located: Sequence[route_ops.Location],
        off_route: Sequence[flag_ops.Flag],
    ) -> None:
        """Store where ``image_ids`` lie along routes (clearing those not located) and their ``off-route``
        flags, in one transaction."""
        with self.transaction() as conn:
            route_ops.store_locations(conn, image_ids, located, off_route)

    def assign_shots(
        self,
        reels: Iterable[str | None],
        tolerance_s: float,
        *,
        around: Mapping[str | None, Mapping[str, datetime | None]] | None = None,
        unshot: bool = False,
    ) -> int:
        """Group the frames of each reel into shots; the number of images whose shot changed.

        One shot is the frames of one rig captured within ``tolerance_s`` of the shot's first frame, one per
        camera. Its id is the reel and the shot's lowest frame number. Shots set by an edit are left alone.
        ``around`` (per reel, the frames that changed: image id -> capture time as read) regroups only the
        frames near those, with the same result (see :func:`~panopipe.catalog.shots.assign_reel_shots`).
        With ``unshot``, the reels that hold frames left out of shots (an ingest stopped before grouping what
        it wrote, see :func:`~panopipe.catalog.shots.unshot_reels`) are regrouped whole as well.
        """
        changed = 0
        with self.transaction() as conn:
            left_out = unshot_reels(conn) if unshot else set()
            for reel in {*reels, *left_out}:
                frames = None if reel in left_out else (around or {}).get(reel)
                changed += assign_reel_shots(conn, reel, tolerance_s, frames)
        return changed

    def positions(self, subjects: Iterable[str] = (), *, limit: int = 20_000) -> MapPositions:
        """The positions of the images that are not deleted, up to ``limit`` in all, with those of the images in
        ``subjects`` (subject ids, e.g. of failed jobs) apart and first: all of them that fit (evenly thinned
        when they alone are more), the others evenly thinned to the room left; counted in full."""
        c = images.c
        where = (c.deleted == sa.false(), c.lat.is_not(None), c.lon.is_not(None))
        flagged_ids = set(subjects)
        points: list[tuple[float, float]] = []
        flagged: list[tuple[float, float]] = []
        with self.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).where(*where)).scalar_one()
            for i, row in enumerate(conn.execute(sa.select(c.id, c.shot, c.lat, c.lon).where(*where))):
                position = (row.lon, row.lat)
                if subject_id("image", row.id) in flagged_ids or subject_id("shot", row.shot) in flagged_ids:
                    flagged.append(position)
                elif spaced(i, total, limit):  # at most ``limit`` of the others kept while they are read
                    points.append(position)
        shown = evenly(flagged, limit)
        return MapPositions(evenly(points, limit - len(shown)), shown, total, len(flagged))

    # Edits

    def plan_edit(
        self,
        selection: Selection | None = None,
        *,
        assign: dict[str, Any] | None = None,
        shift_time_s: float | None = None,
        per_image: dict[str, dict[str, Any]] | None = None,
    ) -> list[FieldChange]:
        """The field changes an edit would make, without making them (``edit --dry-run``).

        ``assign`` sets fields to the same value on every selected image, ``shift_time_s`` moves capture
        times, ``per_image`` sets values per image id (e.g. positions from a CSV; see :meth:`resolve_keys`).
        A selection that holds no image is a :class:`~panopipe.errors.NotFoundError`.
        """
        with self.connect() as conn:
            return edit_ops.plan(
                conn, selection or Selection(), assign or {}, shift_time_s, per_image or {}, self.postgis
            )

    def apply_edit(
        self,
        changes: Sequence[FieldChange],
        *,
        reason: str,
        author: str,
        progress: Callable[[int, int], None] | None = None,
        shot_tolerance_s: float | None = None,
    ) -> str:
        """Record ``changes`` as one edit batch and make them effective; the batch id (for ``undo``).
        ``progress(done, total)`` follows the images updated. With ``shot_tolerance_s`` (as
        :meth:`assign_shots` takes it), a change of capture times or cameras groups the frames of their reels
        into shots again, in the same transaction: shots are made from those."""
        if not reason.strip():
            raise ConfigError("an edit needs a reason (--reason)")
        with self.transaction() as conn:
            return edit_ops.apply(
                conn,
                changes,
                reason=reason,
                author=author,
                progress=progress,
                shot_tolerance_s=shot_tolerance_s,
            )

    def history(self, *, image_id: str | None = None, batch: str | None = None) -> list[Edit]:
        """Recorded edits, one per field and image, oldest first, of one image or one batch (full or short
        ids), or all."""
        if image_id is not None:
            image_id = self.get(image_id).id
        with self.connect() as conn:
            if batch is not None:
                batch = short_ids.resolve(conn, edits.c.batch, batch, "edit batch")
            return edit_ops.history(conn, image_id=image_id, batch=batch)

    def edit_batches(self, *, image_id: str | None = None) -> list[EditBatch]:
        """Edit batches, oldest first, with who made each, when, why and how many images and fields it changed;
        optionally only those that changed one image (full or short id)."""
        if image_id is not None:
            image_id = self.get(image_id).id
        with self.connect() as conn:
            return edit_ops.batches(conn, image_id=image_id)

    def short_batch_ids(self, batches: Sequence[str]) -> dict[str, str]:
        """The short id of each edit batch of ``batches``, unique among the catalog's batches."""
        with self.connect() as conn:
            return short_ids.short_ids(conn, edits.c.batch, batches)

    def undo(
        self,
        batch: str,
        *,
        author: str,
        dry_run: bool = False,
        progress: Callable[[int, int], None] | None = None,
        shot_tolerance_s: float | None = None,
    ) -> list[FieldChange]:
        """Revert the edit batch ``batch`` (full or short id); the resulting changes of effective values. With
        ``dry_run`` the changes are computed and rolled back (``undo --dry-run``). ``progress(done, total)``
        follows the images updated; ``shot_tolerance_s`` regroups shots as :meth:`apply_edit` does."""
        with self.connect() as conn, conn.begin() as transaction:
            batch = short_ids.resolve(conn, edits.c.batch, batch, "edit batch")
            changes = edit_ops.undo(
                conn, batch, author=author, progress=progress, shot_tolerance_s=shot_tolerance_s
            )
            if dry_run:
                transaction.rollback()
            return changes

    def resolve_keys(self, rows: Iterable[dict[str, str]]) -> dict[str, dict[str, Any]]:
        """Map rows keyed by ``id``, ``uri``, or ``reel`` + ``frame`` (every camera of the frame, or the one of
        ``camera_index``) to image ids and their typed values."""
        with self.connect() as conn:
            return edit_ops.resolve_keys(conn, rows)

    # Project configuration

    def project_config(self, version: int | None = None) -> ConfigVersion | None:
        """The project configuration's newest version (or ``version``); ``None`` when none was pushed."""
        with self.autocommit() as conn:  # one statement: every planner reads it, the event handler per batch
            return config_ops.current(conn, version)

    def project_config_history(self) -> list[ConfigVersion]:
        """Every pushed version of the project configuration, oldest first."""
        with self.connect() as conn:
            return config_ops.history(conn)

    def push_project_config(self, content: Mapping[str, Any], *, author: str, reason: str) -> ConfigVersion:
        """Store ``content`` as the project configuration's next version, which planners use from now on."""
        with self.transaction() as conn:
            return config_ops.push(conn, content, author=author, reason=reason)


def _image(row: Any, flags: Iterable[flag_ops.StoredFlag] = ()) -> Image:
    mapping = row._mapping
    captured = mapping["captured"] or {}
    return Image(
        **{name: mapping[name] for name in IMAGE_COLUMNS},
        edited_fields=tuple(sorted(captured)),
        flags=tuple(f.flag for f in flags),
    )


__all__ = ["Catalog", "FileLocation", "KnownCopy", "KnownFile", "MapPositions"]
