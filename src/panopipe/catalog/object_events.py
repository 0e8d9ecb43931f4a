"""Object events applied to the catalog: creations and removals of files (S3 objects), in order and idempotent
across concurrent handlers.

Order and idempotence come from the database: each image stores the sequencer of the last event applied
(upper-case, zero-left-padded, so text order is event order). An event applies in the transaction whose
``UPDATE ... WHERE source_sequencer < :new`` moves it forward (on PostgreSQL the rows are locked, in URI order,
as they are read); the lock holds until the change is written. A batch's events share one transaction and a
few statements; if any of them fails, the batch is applied again one event per transaction, so only that
event (and the later events of its group, e.g. its message) fails: a unique URI another handler wrote first,
a value the database refuses. When the catalog itself refuses the transaction (locked by another process,
read-only, out of space, unreachable: :class:`~panopipe.errors.CatalogUnavailableError`), each event alone
would fail alike, after as long a wait: every event of the batch fails at once, with the one line that says
why (:func:`~panopipe.catalog.engine.database_error`), for its message to be delivered again later. Removing an unknown object leaves a deleted
placeholder with its sequencer, so an older creation arriving later cannot bring it back; that creation still
fills in the placeholder's metadata (it stays deleted), as it would have had it arrived first. So the final rows
do not depend on the order events are delivered in, but for the shot of a removed image: it keeps the one it
was in when its object was removed, as ``panopipe ingest`` leaves it (:func:`mark_deleted`), and an image
removed before it was ever grouped is in none.

The creation of an object the catalog does not know is matched by its content (SHA-256) with the images, as
``panopipe ingest`` matches new files:

* an image whose file is a local one takes it over: the image follows its file to S3, as ``panopipe sync``
  points it there (the local file is then known as a copy);
* an image whose object the same batch removes takes it over (``aws s3 mv`` within the bucket, both events
  in one batch);
* an image whose object stays is not added again: the new object is known as a copy of it (``aws s3 cp``
  within the bucket); so is every creation after the first with one content in a batch;
* a deleted image is brought back by it, its id, edits and outputs kept (``aws s3 mv`` whose removal came
  first).

The removal of an image's object whose copy the catalog knows, in the same bucket, moves the image to that copy
(``aws s3 mv`` whose removal came last), when the handler read the copy's header (:attr:`ObjectChange.successor`)
and it still holds the content. A removed object that an image left keeps a deleted placeholder with the
removal's sequencer, so that an older event of its key cannot bring anything back there.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from panopipe.catalog import file_copies as copy_ops
from panopipe.catalog.engine import connect, database_error
from panopipe.catalog.records import ImageRecord, UpsertResult
from panopipe.catalog.schema import images
from panopipe.catalog.subjects import CHUNK
from panopipe.catalog.types import new_id, utcnow
from panopipe.errors import CatalogError, CatalogUnavailableError, EventError, PanopipeError
from panopipe.iterutil import batched

SEQUENCER_WIDTH = 64

log = logging.getLogger(__name__)


class Action(StrEnum):
    """What handling one object event did."""

    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DUPLICATE = "duplicate"
    DELETED = "deleted"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ObjectChange:
    """One object event: the object's URI, its padded sequencer (see :func:`padded_sequencer`), the object
    version, the record read for a creation (``None``: the object was removed), and its ``group`` (e.g. its
    message: once one change of a group fails, the group's later changes are not applied). A removal's
    ``successor`` is the record of a known copy of the removed image's file, read for the image to move to."""

    uri: str
    sequencer: str | None
    version_id: str | None = None
    record: ImageRecord | None = None
    group: Hashable | None = None
    successor: ImageRecord | None = None


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """What applying one :class:`ObjectChange` did: the action, why (a skip, a failure or a failed record),
    and the image it changed."""

    action: Action
    reason: str | None = None
    image_id: str | None = None


OnRemoved = Callable[[sa.Connection, Sequence[str], Sequence[str]], None]
"""Called in the transaction that removes images, with their ids and the shots that have no frame left."""
Then = Callable[[sa.Connection, Sequence[tuple[ObjectChange, AppliedChange]]], None]
"""Called with the changes applied and what each did, in the batch's transaction (after the one-by-one
fallback, in each change's)."""
Upsert = Callable[
    [sa.Connection, Sequence[ImageRecord], Mapping[str, Mapping[str, Any]], Mapping[str, Any] | None],
    UpsertResult,
]
"""Upserts records in the caller's transaction, given more columns for the images it adds (by URI) and,
unless ``None``, the rows of the records' URIs as read and locked (by URI; absent: no such image), whose
leading columns are those ``apply_changes`` was given."""


class _Raced(CatalogError):
    """A concurrent handler applied a newer event of an object between reading and claiming its row."""


def apply_changes(
    engine: sa.Engine,
    changes: Sequence[ObjectChange] | Callable[[], Sequence[ObjectChange]],
    upsert: Upsert,
    columns: tuple[sa.ColumnElement[Any], ...],
    on_removed: OnRemoved | None,
    then: Then | None = None,
    *,
    uris: Collection[str] = (),
) -> list[AppliedChange | None]:
    """Apply ``changes`` in one transaction or, if that fails, one transaction each; per change what it did
    (``None``: not applied, as an earlier change of its group failed). When the catalog refuses the writes
    (:class:`~panopipe.errors.CatalogUnavailableError`), the changes left all fail at once. The images' rows are read with
    ``columns`` (``uri``, ``id`` and ``deleted`` among them) for ``upsert``. ``then`` runs in the batch's
    transaction, or in each change's.

    ``changes`` may be a function that returns them once they are ready: on PostgreSQL the rows at ``uris``
    are read and locked first (in URI order, as every handler locks them), in the batch's transaction, which
    then applies the changes' first round with them (if ``uris`` holds all the changes' URIs; else that
    round reads its rows itself)."""
    read = _locking_read(columns)
    ready = None if callable(changes) else changes
    try:
        with connect(engine) as conn, conn.begin():
            early = None
            if ready is None:
                assert callable(changes)
                locking = set(uris)
                if locking and conn.dialect.name == "postgresql":
                    early = {row.uri: row for row in conn.execute(read, {"uris": sorted(locking)})}
                ready = changes()
                if early is not None and not all(change.uri in locking for change in ready):
                    early = None
            pairs = [
                pair
                for n, round_ in enumerate(_rounds(ready))
                for pair in _apply_round(
                    conn, ready, round_, upsert, read, on_removed, early if n == 0 else None
                )
            ]
            if then is not None:
                then(conn, [(ready[index], applied) for index, applied in pairs])
    except (PanopipeError, sa.exc.SQLAlchemyError) as exc:
        error = _catalog_error(exc, engine)
        log.info("batch transaction rolled back", extra={"reason": str(error)})
        if ready is None:  # the transaction failed before the changes were asked for
            assert callable(changes)
            ready = changes()
        if isinstance(error, CatalogUnavailableError):
            return _all_failed(error, len(ready))
    else:
        results: list[AppliedChange | None] = [None] * len(ready)
        for index, applied in pairs:
            results[index] = applied
        return results
    results = []
    failed: set[Hashable] = set()
    for index, change in enumerate(ready):
        if change.group is not None and change.group in failed:
            results.append(None)
            continue
        try:
            applied = _apply_alone(engine, ready, index, upsert, read, on_removed, then)
        except CatalogUnavailableError as error:
            return results + _all_failed(error, len(ready) - index)
        if applied.action is Action.FAILED and change.group is not None:
            failed.add(change.group)
        results.append(applied)
    return results


@functools.lru_cache(maxsize=8)
def _locking_read(columns: tuple[sa.ColumnElement[Any], ...]) -> sa.Select[Any]:
    """The images' rows at the URIs given as ``uris``, read and locked in URI order: ``columns``, then the
    sequencer (built once: every batch reads the same columns)."""
    c = images.c
    query = sa.select(*columns, c.source_sequencer).where(c.uri.in_(sa.bindparam("uris", expanding=True)))
    return query.order_by(c.uri).with_for_update()


def _apply_alone(
    engine: sa.Engine,
    changes: Sequence[ObjectChange],
    index: int,
    upsert: Upsert,
    read: sa.Select[Any],
    on_removed: OnRemoved | None,
    then: Then | None,
) -> AppliedChange:
    """Change ``index`` in a transaction of its own, ``then`` with it; a failure (the database's included) is
    its outcome, but for the catalog's own (:class:`~panopipe.errors.CatalogUnavailableError`), raised."""
    try:
        for attempt in (1, 2):
            try:
                with connect(engine) as conn, conn.begin():
                    ((_, applied),) = _apply_round(conn, changes, [index], upsert, read, on_removed)
                    if then is not None:
                        then(conn, [(changes[index], applied)])
                    return applied
            except (sa.exc.IntegrityError, _Raced):
                if attempt == 2:  # a concurrent handler wrote the same URI first: read its row again
                    raise
    except (PanopipeError, sa.exc.SQLAlchemyError) as exc:
        error = _catalog_error(exc, engine)
        if isinstance(error, CatalogUnavailableError):
            raise error from exc
        return AppliedChange(Action.FAILED, str(error))
    raise AssertionError("unreachable")


def _catalog_error(exc: PanopipeError | sa.exc.SQLAlchemyError, engine: sa.Engine) -> PanopipeError:
    """``exc`` as the one line said to a user: a database error as :func:`~panopipe.catalog.engine.database_error`
    says it (never SQL text)."""
    return database_error(exc, engine.url) if isinstance(exc, sa.exc.SQLAlchemyError) else exc


def _all_failed(error: CatalogUnavailableError, count: int) -> list[AppliedChange | None]:
    """``count`` changes failed by the catalog's condition ``error``."""
    return [AppliedChange(Action.FAILED, str(error)) for _ in range(count)]


def _rounds(changes: Sequence[ObjectChange]) -> list[list[int]]:
    """The indexes of ``changes`` in rounds of distinct URIs, sorted by URI: round *n* holds the *n*-th change
    of each URI, so that one object's changes apply in delivery order."""
    rounds: list[list[int]] = []
    seen: dict[str, int] = {}
    for index in sorted(range(len(changes)), key=lambda i: changes[i].uri):
        n = seen[changes[index].uri] = seen.get(changes[index].uri, -1) + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(index)
    return rounds


def _apply_round(
    conn: sa.Connection,
    changes: Sequence[ObjectChange],
    indexes: list[int],
    upsert: Upsert,
    read: sa.Select[Any],
    on_removed: OnRemoved | None,
    rows: Mapping[str, Any] | None = None,
) -> list[tuple[int, AppliedChange]]:
    """Apply changes for distinct URIs, a few statements for all of them: the images' rows are read (and
    locked, on PostgreSQL, in URI order, as every handler locks them), changes not newer than the one an image
    applied are skipped, the others claim their row with their sequencer (an unknown URI's creation is added
    with it, or takes over the image with its content, or is known as a copy; its removal leaves a deleted
    placeholder), then creations are upserted together and removals mark their image deleted, or move it to
    its copy.

    A claim is guarded in SQL too (``source_sequencer < :new``; a take-over, by the sequencer and URI read):
    SQLite does not lock what was read, and a claim that a concurrent handler overtook raises :class:`_Raced`,
    so that nothing older is written. On PostgreSQL the upsert compares with the rows read (``read``), and an
    image a concurrent handler added after they were read makes its insert fail (URIs are unique): the batch
    is then applied again one event per transaction. ``rows``, unless ``None``, are the rows of the changes'
    URIs (and maybe others) as ``read`` read and locked them in this transaction.
    """
    c = images.c
    if rows is None:
        rows = {row.uri: row for row in conn.execute(read, {"uris": [changes[i].uri for i in indexes]})}
    copy_ops.forget(conn, [changes[i].uri for i in indexes if changes[i].uri not in rows])
    matches = _match_contents(conn, changes, indexes, rows, read)
    followers = _followers(conn, changes, indexes, rows, matches)
    left_behind = [row.uri for row in matches.taken.values() if not row.deleted and not _on_s3(row.uri)]
    if left_behind:  # the local files left behind hold the images' content: an ingest need not read them
        copy_ops.record_images_files(conn, sorted(left_behind))
    moving = {successor.uri: rows[changes[index].uri] for index, successor in followers.items()}
    rows = {**rows, **matches.taken, **moving}
    # Rows read on PostgreSQL stay locked, so the upsert compares with them; SQLite locks nothing it read.
    locked = rows if conn.dialect.name == "postgresql" else None
    now = utcnow()
    outcomes: list[tuple[int, AppliedChange]] = []
    claimed: list[tuple[int, str, bool]] = []
    placeholders: list[dict[str, Any]] = []
    left: list[dict[str, Any]] = []  # placeholders where an image moved from, written once it has moved
    claims: list[dict[str, Any]] = []
    takeovers: list[dict[str, Any]] = []
    records: list[ImageRecord] = []
    sources: dict[str, dict[str, Any]] = {}
    fills: list[tuple[str, str | None, ImageRecord]] = []
    for index in indexes:
        change = changes[index]
        if index in matches.copies:
            continue
        row = rows.get(change.uri)
        source = {"source_sequencer": change.sequencer, "source_version_id": change.version_id}
        if change.uri in matches.vacated:
            left.append({"id": new_id(), "uri": change.uri, "deleted": True} | source)
            moved_to = matches.vacated[change.uri]
            reason = f"its image moved to {moved_to}"
            outcomes.append((index, AppliedChange(Action.UNCHANGED, reason, matches.taken[moved_to].id)))
            continue
        if row is None:
            image_id = new_id()
            if change.record is not None:  # added by the upsert, with its event
                records.append(replace(change.record, id=image_id))
                sources[change.record.uri] = source
            else:
                placeholder = {"id": image_id, "uri": change.uri, "deleted": True}
                placeholders.append(placeholder | {"ingested_at": now, "updated_at": now} | source)
        elif change.uri in matches.taken:  # sequencers of other keys do not compare: guarded by what was read
            image_id = row.id
            takeovers.append({"_id": image_id, "_seen": row.source_sequencer, "_seen_uri": row.uri} | source)
            if _on_s3(row.uri) and row.uri not in matches.vacated:
                # a deleted image brought back: the key it left keeps its last event
                kept = {"source_sequencer": row.source_sequencer, "source_version_id": None}
                left.append({"id": new_id(), "uri": row.uri, "deleted": True} | kept)
        elif _applies(change, row):
            image_id = row.id
            claims.append({"_id": image_id, "_new": change.sequencer} | source)
        else:
            if change.record is not None and row.deleted:  # removed later: keep what it was, deleted
                fills.append((row.id, row.source_sequencer, replace(change.record, id=row.id)))
            outcomes.append((index, AppliedChange(Action.SKIPPED, "not newer than the event applied")))
            continue
        claimed.append((index, image_id, row is None))
    if placeholders:
        conn.execute(images.insert(), placeholders)
    if claims:
        new = sa.bindparam("_new", type_=sa.String)
        newer = sa.or_(new.is_(None), c.source_sequencer.is_(None), c.source_sequencer < new)
        claim = images.update().where(c.id == sa.bindparam("_id"), newer)
        if conn.execute(claim, claims).rowcount != len(claims):
            raise _Raced("a concurrent handler applied a newer event of the same object")
    if takeovers:
        seen = sa.bindparam("_seen", type_=sa.String)
        as_read = sa.and_(c.source_sequencer.is_not_distinct_from(seen), c.uri == sa.bindparam("_seen_uri"))
        taking = images.update().where(c.id == sa.bindparam("_id"), as_read)
        if conn.execute(taking, takeovers).rowcount != len(takeovers):
            raise _Raced("a concurrent handler changed an image this batch takes over")
    if fills:
        _fill_removed(conn, fills, upsert, locked)
    # An image taken over or moved is found by its id: its row has another URI.
    records += [
        replace(written, id=image_id)
        for index, image_id, added in claimed
        if (written := followers.get(index, changes[index].record)) is not None and not added
    ]
    result = upsert(conn, records, sources, locked) if records else None
    unknown = {record.id for record in records if record.uri in sources}
    if result is not None and not unknown <= set(result.added):
        # A concurrent handler inserted one of these URIs after they were read (SQLite): its row was updated
        # without the sequencer guard. Roll back; read again, the row is there and the guard applies.
        raise _Raced("a concurrent handler added the same object")
    updated = set(result.updated) if result is not None else set()
    if followers:  # no event of the copies' keys is known: any applies to the images there now
        moved = [image_id for index, image_id, _ in claimed if index in followers]
        conn.execute(
            images.update().where(c.id.in_(moved)).values(source_sequencer=None, source_version_id=None)
        )
        copy_ops.forget(conn, [successor.uri for successor in followers.values()])
        left += [
            {"id": new_id(), "uri": changes[index].uri, "deleted": True}
            | {"source_sequencer": changes[index].sequencer, "source_version_id": changes[index].version_id}
            for index in followers
        ]
    if left:
        conn.execute(images.insert(), [row | {"ingested_at": now, "updated_at": now} for row in left])
    removed = [
        image_id for index, image_id, _ in claimed if changes[index].record is None and index not in followers
    ]
    deleted = {row.id for row in mark_deleted(conn, c.id, removed)}
    ids = {changes[index].uri: image_id for index, image_id, _ in claimed}
    for index, image_id, added in claimed:
        record = changes[index].record
        if index in followers:
            reason = f"moved to its copy {followers[index].uri}"
            outcome = AppliedChange(Action.UPDATED, reason, image_id)
        elif record is None and added:  # the removal is kept, for an older creation not to add it
            outcome = AppliedChange(Action.SKIPPED, "not in the catalog: nothing to delete")
        elif record is None:
            action = Action.DELETED if image_id in deleted else Action.UNCHANGED
            outcome = AppliedChange(action, image_id=image_id if image_id in deleted else None)
        else:
            action = Action.ADDED if added else Action.UPDATED if image_id in updated else Action.UNCHANGED
            outcome = AppliedChange(action, record.error if record.status == "failed" else None, image_id)
        outcomes.append((index, outcome))
    outcomes += _record_copies(conn, changes, matches, ids)
    if removed and on_removed is not None:
        on_removed(conn, removed, _emptied_shots(conn, removed))
    return outcomes


def mark_deleted(conn: sa.Connection, column: sa.ColumnElement[Any], keys: Collection[Any]) -> list[Any]:
    """Mark deleted the images whose ``column`` (``uri``, ``id``) is one of ``keys``, those not deleted yet; their
    rows (``id``, ``reel``). However its file went (``panopipe ingest``, an object event), a deleted image keeps
    its record, its edits and its shot: a shot whose frames are all deleted keeps its outputs, which ``verify``
    lists as ``deleted``, and a frame put back rejoins it."""
    c = images.c
    marked: list[Any] = []
    for chunk in batched(keys, CHUNK):
        deleting = images.update().where(column.in_(chunk), c.deleted == sa.false())
        marked += conn.execute(deleting.values(deleted=True, updated_at=utcnow()).returning(c.id, c.reel))
    return marked


def _applies(change: ObjectChange, row: Any) -> bool:
    """Whether ``change`` is newer than the event the image at its URI (``row``) applied last."""
    return change.sequencer is None or row.source_sequencer is None or row.source_sequencer < change.sequencer


def _on_s3(uri: str) -> bool:
    return uri.startswith("s3://")


@dataclass(slots=True)
class _Matches:
    """What creations of unknown objects are, by their content: the images they take over (by creation URI),
    the removed URIs those images moved from (to the creation's URI), and the copies (by change index: the
    original's URI, and its image's id unless the original is added in this round)."""

    taken: dict[str, Any]
    vacated: dict[str, str]
    copies: dict[int, tuple[str, str | None]]


def _match_contents(
    conn: sa.Connection,
    changes: Sequence[ObjectChange],
    indexes: list[int],
    rows: Mapping[str, Any],
    read: sa.Select[Any],
) -> _Matches:
    """Match the creations of unknown objects with the images that have their content (SHA-256), read (and
    locked, on PostgreSQL) as ``read`` reads rows, as ingest matches new files: see the module's docs."""
    matches = _Matches({}, {}, {})
    by_content: dict[str, list[int]] = {}
    for index in sorted(indexes, key=lambda i: changes[i].uri):
        record = changes[index].record
        if record is not None and record.content_hash and changes[index].uri not in rows:
            by_content.setdefault(record.content_hash, []).append(index)
    if not by_content:
        return matches
    in_round = {changes[i].uri for i in indexes}
    removing = {
        changes[i].uri
        for i in indexes
        if changes[i].record is None
        and (row := rows.get(changes[i].uri)) is not None
        and _applies(changes[i], row)
    }
    recreated = {changes[i].uri for i in indexes if changes[i].record is not None} & rows.keys()
    c = images.c
    query = (
        sa.select(*read.selected_columns, c.ingested_at)
        .where(c.content_hash.in_(list(by_content)))
        .order_by(c.uri)
        .with_for_update()
    )
    found: dict[str, list[Any]] = {}
    for row in conn.execute(query):
        found.setdefault(row.content_hash, []).append(row)
    for content_hash, (first, *others) in by_content.items():
        candidates = found.get(content_hash, [])
        staying = [r for r in candidates if (not r.deleted or r.uri in recreated) and r.uri not in removing]
        gone = sorted(
            (r for r in candidates if r.deleted and r.uri not in in_round),
            key=lambda r: (r.ingested_at, r.uri),
        )
        local = [r for r in staying if not r.deleted and not _on_s3(r.uri)]
        moved = [r for r in candidates if not r.deleted and r.uri in removing]
        if local or moved or (gone and not staying):  # a local file uploaded, an object moved, an image back
            image = (local or moved or gone)[0]
            matches.taken[changes[first].uri] = image
            if image.uri in removing:
                matches.vacated[image.uri] = changes[first].uri
            original: tuple[str, str | None] = (changes[first].uri, image.id)
        elif staying:  # its object stays: every creation is a copy of it
            others = [first, *others]
            original = (staying[0].uri, staying[0].id)
        else:  # the first is added, the rest are copies of it
            original = (changes[first].uri, None)
        for index in others:
            matches.copies[index] = original
    return matches


def _record_copies(
    conn: sa.Connection, changes: Sequence[ObjectChange], matches: _Matches, ids: Mapping[str, str]
) -> list[tuple[int, AppliedChange]]:
    """Record the creations that :func:`_match_contents` found copies, once their originals are written (``ids``:
    the images of this round's URIs); their outcomes."""
    copies, outcomes = [], []
    for index, (original_uri, original_id) in matches.copies.items():
        record = changes[index].record
        assert record is not None and record.content_hash is not None
        copy = copy_ops.FileCopy(
            record.uri, original_uri, record.content_hash, record.size, record.etag, record.modified_at
        )
        copies.append(copy)
        image_id = original_id or ids[original_uri]
        outcomes.append((index, AppliedChange(Action.DUPLICATE, f"a copy of {original_uri}", image_id)))
    copy_ops.record(conn, copies)
    return outcomes


def _followers(
    conn: sa.Connection,
    changes: Sequence[ObjectChange],
    indexes: list[int],
    rows: Mapping[str, Any],
    matches: _Matches,
) -> dict[int, ImageRecord]:
    """The removals whose images move to their copies instead (by change index, the copy's record): the
    change's ``successor`` is a copy the catalog still knows of the image, holding its content, where no image
    is, and no other change of this round is about it."""
    in_round = {changes[i].uri for i in indexes}
    wanted: dict[int, ImageRecord] = {}
    for index in indexes:
        change = changes[index]
        successor, row = change.successor, rows.get(change.uri)
        if (
            change.record is None
            and successor is not None
            and row is not None
            and not row.deleted
            and row.content_hash
            and successor.content_hash == row.content_hash
            and change.uri not in matches.vacated
            and successor.uri not in in_round
            and _applies(change, row)
        ):
            wanted[index] = successor
    if not wanted:
        return {}
    held = copy_ops.held_by(conn, sorted({successor.uri for successor in wanted.values()}))
    return {
        index: successor
        for index, successor in wanted.items()
        if held.get(successor.uri) == rows[changes[index].uri].id
    }


def _fill_removed(
    conn: sa.Connection,
    fills: list[tuple[str, str | None, ImageRecord]],
    upsert: Upsert,
    locked: Mapping[str, Any] | None,
) -> None:
    """Write the metadata of creations older than the removal their images applied, keeping them deleted
    (and in the shot they were in, if any). Guarded as claims are: the row must still hold the sequencer read
    and be deleted."""
    c = images.c
    guard = images.update().where(
        c.id == sa.bindparam("_id"),
        c.source_sequencer.is_not_distinct_from(sa.bindparam("_seen", type_=sa.String)),
        c.deleted == sa.true(),
    )
    params = [{"_id": image_id, "_seen": seen} for image_id, seen, _ in fills]
    if conn.execute(guard.values(deleted=True), params).rowcount != len(fills):
        raise _Raced("a concurrent handler applied a newer event of the same object")
    upsert(conn, [record for _, _, record in fills], {}, locked)
    ids = [image_id for image_id, _, _ in fills]
    conn.execute(images.update().where(c.id.in_(ids)).values(deleted=True))


def _emptied_shots(conn: sa.Connection, image_ids: Sequence[str]) -> list[str]:
    """The shots of ``image_ids`` that have no frame left that is not deleted."""
    frame = images.alias("frame")
    kept = sa.exists().where(frame.c.shot == images.c.shot, frame.c.deleted == sa.false())
    emptied: set[str] = set()
    for chunk in batched(image_ids, CHUNK):
        query = sa.select(images.c.shot).where(images.c.id.in_(chunk), images.c.shot.is_not(None), ~kept)
        emptied.update(conn.execute(query).scalars())
    return sorted(emptied)


def padded_sequencer(sequencer: str | None) -> str | None:
    """``sequencer`` upper-cased and zero-left-padded to :data:`SEQUENCER_WIDTH`, so text order is event order.

    Raises :class:`EventError` for a sequencer that is not hexadecimal or too long.
    """
    if sequencer is None:
        return None
    if (
        not sequencer
        or len(sequencer) > SEQUENCER_WIDTH
        or not all(ch in "0123456789abcdefABCDEF" for ch in sequencer)
    ):
        raise EventError(f"sequencer must be up to {SEQUENCER_WIDTH} hexadecimal digits, got {sequencer!r}")
    return sequencer.upper().rjust(SEQUENCER_WIDTH, "0")


__all__ = [
    "SEQUENCER_WIDTH",
    "Action",
    "AppliedChange",
    "ObjectChange",
    "OnRemoved",
    "Then",
    "Upsert",
    "apply_changes",
    "mark_deleted",
    "padded_sequencer",
]
