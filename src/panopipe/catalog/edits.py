"""Non-destructive edits: per-field overrides recorded with who, when and why, and undoable.

The ``images`` columns hold effective values so queries stay indexed. While a field has active edits,
``images.captured`` keeps the value the file carries, so undoing the last edit restores it exactly.
"""

from __future__ import annotations

import getpass
import itertools
import os
from collections.abc import Callable, Collection, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from panopipe.catalog import short_ids
from panopipe.catalog.bulk import insert_columns, update_by_key
from panopipe.catalog.locks import hold_write_lock
from panopipe.catalog.records import EDITABLE_FIELDS, Edit, EditBatch, FieldChange
from panopipe.catalog.schema import edits, images
from panopipe.catalog.selection import Selection, no_match, unknown_names
from panopipe.catalog.shots import assign_reel_shots
from panopipe.catalog.spatial import PostGIS
from panopipe.catalog.subjects import CHUNK, Subject, form_condition, touch_shots
from panopipe.catalog.types import new_id, utcnow
from panopipe.catalog.values import from_json, parse_value, to_json, validate_value
from panopipe.errors import CatalogError, ConfigError, NotFoundError
from panopipe.iterutil import batched


def current_author() -> str:
    """Who changes the catalog from this process, as edits, undos, QC fixes and pushed configurations record
    it: the login name (``$LOGNAME``, ``$USER``..., else the uid's passwd entry), else ``uid:N`` (a container
    run with ``--user N`` has neither)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # Python 3.11's KeyError of pwd, 3.13's OSError
        return f"uid:{os.getuid()}"


def _check_field(field: str) -> None:
    if field not in EDITABLE_FIELDS:
        raise ConfigError(f"cannot edit {field!r}: editable fields are {', '.join(EDITABLE_FIELDS)}")


def plan(
    conn: sa.Connection,
    selection: Selection,
    assign: dict[str, Any],
    shift_time_s: float | None,
    per_image: dict[str, dict[str, Any]],
    postgis: PostGIS | None = None,
) -> list[FieldChange]:
    """The effective-value changes of an edit; fields whose value would not change are left out. A
    :class:`~panopipe.errors.NotFoundError` when the selection holds no image."""
    for field in (*assign, *(f for values in per_image.values() for f in values)):
        _check_field(field)
    fields = sorted({*assign, *(f for values in per_image.values() for f in values)})
    if shift_time_s:
        fields = sorted({*fields, "captured_at"})
    if not fields:
        raise ConfigError("nothing to change: give --set FIELD=VALUE, --shift-time or --positions")
    query = sa.select(images.c.id, images.c.lat, images.c.lon, *(images.c[f] for f in fields))
    # A positions file can name more images than a statement takes parameters: ask in chunks of ids.
    selections = (
        [replace(selection, ids=tuple(chunk)) for chunk in batched(sorted(per_image), CHUNK)]
        if per_image
        else [selection]
    )
    selected = itertools.chain.from_iterable(
        conn.execute(query.where(*part.where(postgis)).order_by(images.c.id)) for part in selections
    )
    changes: list[FieldChange] = []
    matched = 0
    for row in selected:
        if not selection.matches(row):
            continue
        matched += 1
        wanted = {**assign, **per_image.get(row.id, {})}
        if shift_time_s and row.captured_at is not None:
            base = wanted.get("captured_at", row.captured_at)
            try:
                wanted["captured_at"] = base + timedelta(seconds=shift_time_s)
            except OverflowError:
                raise ConfigError(
                    f"a shift of {shift_time_s:+g} s moves the capture time of image {row.id} "
                    f"({base.isoformat()}) past the years 1 to 9999"
                ) from None
        for field, new in sorted(wanted.items()):
            new = validate_value(field, new)
            old = getattr(row, field)
            if old != new:
                changes.append(FieldChange(row.id, field, old, new))
    if not matched:
        raise NotFoundError(no_match(conn, selection))
    if unknown := unknown_names(conn, selection):  # a typo beside names that exist
        raise NotFoundError(f"nothing changed: {'; '.join(name.describe() for name in unknown)}")
    _refuse_split_shots(conn, changes)
    return changes


def _refuse_split_shots(conn: sa.Connection, changes: Sequence[FieldChange]) -> None:
    """A :class:`~panopipe.errors.ConfigError` if ``changes`` would leave a rig shot with some frames excluded
    and some not: it is stitched from all of them (one left out, its stitch would fail on every run), so they
    are excluded or kept together, as ``qc --fix`` thins them."""
    excluded = {change.image_id: bool(change.new) for change in changes if change.field == "excluded"}
    i, frames = images.c, form_condition("shot")
    for chunk in batched(sorted(excluded), CHUNK):
        shots = sa.select(i.shot).where(i.id.in_(chunk), frames, i.deleted == sa.false())
        query = sa.select(i.shot, i.id, i.excluded).where(frames, i.deleted == sa.false(), i.shot.in_(shots))
        for shot, rows in itertools.groupby(conn.execute(query.order_by(i.shot)), key=lambda row: row.shot):
            ending = [excluded.get(row.id, row.excluded) for row in rows]
            if 0 < sum(ending) < len(ending):
                raise ConfigError(
                    f"shot {shot} would have {sum(ending)} of its {len(ending)} frames excluded: a rig shot is "
                    f"stitched from all its frames, so they are excluded or kept together (--shot {shot})"
                )


def apply(
    conn: sa.Connection,
    changes: Sequence[FieldChange],
    *,
    reason: str,
    author: str,
    progress: Callable[[int, int], None] | None = None,
    shot_tolerance_s: float | None = None,
) -> str:
    """Record ``changes`` as one batch and update effective values; the batch id. ``progress(done, total)``
    follows the images updated. With ``shot_tolerance_s``, the reels whose capture times or cameras changed
    are grouped into shots again.

    The old value recorded is the image's as this transaction reads it, with the rows locked (PostgreSQL's
    ``FOR UPDATE``, SQLite's write lock): an edit committed since ``changes`` were planned is what history
    says this one replaced, and a change it made already (or of an image deleted since) is left out."""
    if not changes:
        raise CatalogError(NOTHING_TO_CHANGE)
    hold_write_lock(conn)  # PostgreSQL: the rows read are locked FOR UPDATE
    batch = new_id()
    now = utcnow()
    by_image: dict[str, list[FieldChange]] = {}
    for change in changes:
        _check_field(change.field)
        by_image.setdefault(change.image_id, []).append(change)
    made: list[FieldChange] = []
    done = 0
    for chunk in batched(by_image, CHUNK):
        touched = sorted({change.field for image_id in chunk for change in by_image[image_id]})
        query = sa.select(images.c.id, images.c.captured, *(images.c[field] for field in touched))
        updates: _Updates = {}
        rows = conn.execute(query.where(images.c.id.in_(chunk)).order_by(images.c.id).with_for_update())
        for row in rows:
            captured = dict(row.captured or {})
            values: dict[str, Any] = {}
            for change in by_image[row.id]:
                current = getattr(row, change.field)
                if current == change.new:
                    continue
                captured.setdefault(change.field, to_json(change.field, current))
                values[change.field] = change.new
                made.append(replace(change, old=current))
            if values:
                _add_update(updates, row.id, values, captured)
        _update_images(conn, updates, now)
        done += len(chunk)
        if progress is not None:
            progress(done, len(by_image))
    if not made:
        raise CatalogError(NOTHING_TO_CHANGE)
    _touch_regrouped_shots(conn, made, now)
    _regroup_reels(conn, made, shot_tolerance_s)
    insert_columns(
        conn,
        edits,
        {
            "batch": [batch] * len(made),
            "image_id": [c.image_id for c in made],
            "field": [c.field for c in made],
            "old_value": [to_json(c.field, c.old) for c in made],
            "new_value": [to_json(c.field, c.new) for c in made],
            "author": [author] * len(made),
            "reason": [reason] * len(made),
            "created_at": [now] * len(made),
        },
    )
    return batch


NOTHING_TO_CHANGE = "the edit changes nothing: every selected image already has these values"


def undo(
    conn: sa.Connection,
    batch: str,
    *,
    author: str,
    progress: Callable[[int, int], None] | None = None,
    shot_tolerance_s: float | None = None,
) -> list[FieldChange]:
    """Mark the edits of ``batch`` undone and recompute the effective values they touched: each field's
    latest edit that is not undone, or the value the file carries (kept in ``captured``) when none is.
    ``progress(done, total)`` follows the images updated; ``shot_tolerance_s`` regroups shots as
    :func:`apply` does."""
    batch_edits = conn.execute(
        sa.select(edits.c.image_id, edits.c.field, edits.c.undone_at).where(edits.c.batch == batch)
    ).all()
    if not batch_edits:
        raise NotFoundError(f"no edit batch {batch!r}; list batches with `panopipe history`")
    if all(e.undone_at is not None for e in batch_edits):
        raise CatalogError(f"edit batch {batch} was already undone")
    now = utcnow()
    conn.execute(edits.update().where(edits.c.batch == batch).values(undone_at=now, undone_by=author))
    touched: dict[str, set[str]] = {}
    for edit in batch_edits:
        touched.setdefault(str(edit.image_id), set()).add(edit.field)
    changes: list[FieldChange] = []
    done = 0
    for chunk in batched(sorted(touched), CHUNK):
        fields = sorted({field for image_id in chunk for field in touched[image_id]})
        active: dict[tuple[str, str], Any] = {}  # in id order: the latest edit of each field stays
        query = sa.select(edits.c.image_id, edits.c.field, edits.c.new_value).where(
            edits.c.image_id.in_(chunk), edits.c.field.in_(fields), edits.c.undone_at.is_(None)
        )
        for image_id, field, new_value in conn.execute(query.order_by(edits.c.id)):
            active[(str(image_id), field)] = new_value
        query = sa.select(images.c.id, images.c.captured, *(images.c[field] for field in fields))
        updates: _Updates = {}
        for row in conn.execute(query.where(images.c.id.in_(chunk)).order_by(images.c.id)):
            captured = dict(row.captured or {})
            values: dict[str, Any] = {}
            for field in sorted(touched[row.id]):
                if (row.id, field) in active:
                    values[field] = from_json(field, active[(row.id, field)])
                else:
                    values[field] = from_json(field, captured.pop(field, to_json(field, getattr(row, field))))
                if values[field] != getattr(row, field):
                    changes.append(FieldChange(row.id, field, getattr(row, field), values[field]))
            _add_update(updates, row.id, values, captured or None)
        _update_images(conn, updates, now)
        done += len(chunk)
        if progress is not None:
            progress(done, len(touched))
    _touch_regrouped_shots(conn, changes, now)
    _regroup_reels(conn, changes, shot_tolerance_s)
    return changes


MEMBERSHIP_FIELDS = frozenset({"shot", "excluded", "projection"})
"""Fields whose change takes a frame out of its shot or puts it into one."""


def _touch_regrouped_shots(conn: sa.Connection, changes: Sequence[FieldChange], now: datetime) -> None:
    """Mark every frame of the shots ``changes`` took a frame out of or put one into as changed at ``now``:
    the planner finds a stale shot from its frames' changes, and a frame that left (moved to another shot,
    excluded) is none of them any more."""
    moved = sorted({c.image_id for c in changes if c.field in MEMBERSHIP_FIELDS})
    if not moved:
        return
    shots = {c.old for c in changes if c.field == "shot" and c.old is not None}
    for chunk in batched(moved, CHUNK):
        query = sa.select(images.c.shot).where(images.c.id.in_(chunk), images.c.shot.is_not(None))
        shots.update(conn.execute(query).scalars())
    touch_shots(conn, shots, now)


_GROUPING_FIELDS = frozenset({"captured_at", "camera_index"})
"""Fields shots are grouped by: a change of one regroups the frames of its reel. A reel or frame number edited
regroups nothing: it would rename the reel's shots, whose outputs (kept per shot) would then all be made again
for the same pixels."""


def _regroup_reels(conn: sa.Connection, changes: Sequence[FieldChange], tolerance_s: float | None) -> None:
    """Group again into shots (``tolerance_s``; ``None``: leave the shots alone) the reels whose frames
    ``changes`` of :data:`_GROUPING_FIELDS` touched."""
    if tolerance_s is None:
        return
    regrouped = sorted({c.image_id for c in changes if c.field in _GROUPING_FIELDS})
    reels: set[str | None] = set()
    for chunk in batched(regrouped, CHUNK):
        query = sa.select(images.c.reel).distinct().where(images.c.id.in_(chunk))
        reels.update(conn.execute(query).scalars())
    for reel in sorted(reels, key=lambda name: (name is not None, name or "")):
        assign_reel_shots(conn, reel, tolerance_s)


_Updates = dict[tuple[str, ...], list[dict[str, Any]]]
"""New effective values of images grouped by the fields they set (:func:`_add_update`)."""


def _add_update(
    updates: _Updates,
    image_id: str,
    values: dict[str, Any],
    captured: dict[str, Any] | None,
) -> None:
    """Add an image's new effective ``values`` and ``captured`` to ``updates``, grouped by the fields set."""
    updates.setdefault(tuple(sorted(values)), []).append({**values, "id": image_id, "captured": captured})


def _update_images(conn: sa.Connection, updates: _Updates, now: datetime) -> None:
    """Write ``updates`` through the driver, the images that set the same fields at once: a statement per
    image took 20 s for an edit of 100,000 images (a day's frames on a PPK track)."""
    for fields, rows in updates.items():
        columns = {name: [row[name] for row in rows] for name in (*fields, "captured")}
        columns["updated_at"] = [now] * len(rows)
        update_by_key(conn, images, "id", [row["id"] for row in rows], columns)


def history(conn: sa.Connection, *, image_id: str | None, batch: str | None) -> list[Edit]:
    """Edits, oldest first, optionally of one image or one batch."""
    query = sa.select(edits).order_by(edits.c.id)
    if image_id is not None:
        query = query.where(edits.c.image_id == image_id)
    if batch is not None:
        query = query.where(edits.c.batch == batch)
    return [Edit(**row._mapping) for row in conn.execute(query)]


def batches(conn: sa.Connection, *, image_id: str | None) -> list[EditBatch]:
    """Edit batches, oldest first, each on one line; optionally only those that changed ``image_id``."""
    e = edits.c
    query = (
        sa.select(
            e.batch,
            sa.func.min(e.author),
            sa.func.min(e.reason),
            sa.func.min(e.created_at),
            sa.func.count(sa.distinct(e.image_id)),
            sa.func.count(sa.distinct(e.field)),
            sa.func.count(),
            sa.func.max(e.undone_at),
        )
        .group_by(e.batch)
        .order_by(sa.func.min(e.id))
    )
    if image_id is not None:
        query = query.where(e.batch.in_(sa.select(e.batch).where(e.image_id == image_id)))
    return [EditBatch(*row) for row in conn.execute(query)]


def resolve_keys(conn: sa.Connection, rows: Iterable[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Rows of a positions CSV as ``{image id: {field: typed value}}``.

    Each row names its image by ``id`` or ``uri``, or by ``reel`` and ``frame``: every camera of that frame
    (a rig's exposure, as a post-processed GNSS solution lists them), or the one of ``camera_index`` when the
    row gives it. Every other column is a field to set; a blank cell leaves the image's field as it is (a
    solution without a height on some rows), as a track's blank value does (``--set FIELD=`` clears one).
    Column names are read as a track's are: in any case, with spaces around them.
    """
    resolved: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    keys = _Keys(conn)
    for number, given in enumerate(rows, start=2):
        row = {name.strip().lower(): value for name, value in given.items()}  # as a track's header is read
        if number == 2 and not _KEY_COLUMNS & set(row):
            found = ", ".join(repr(name) for name in row)
            raise ConfigError(
                f"CSV line 1: no column names the image (id, uri, or reel and frame); found {found}"
                + ("; separate the columns with commas" if any(";" in name for name in row) else "")
            )
        try:
            image_ids = keys.images_of(row)
            values = {
                k: parse_value(k, v.strip()) for k, v in row.items() if k not in _KEY_COLUMNS and v.strip()
            }
            for field in values:
                _check_field(field)
        except (ConfigError, NotFoundError) as exc:  # the file's mistake either way: a usage error
            raise ConfigError(f"CSV line {number}: {exc}") from None
        for image_id in image_ids:
            if image_id in lines:
                raise ConfigError(
                    f"CSV line {number}: an image of line {lines[image_id]} again; give each image once"
                )
            lines[image_id] = number
            resolved[image_id] = values
    if not lines:
        raise ConfigError(
            "the CSV has no rows: a header line (e.g. reel,frame,lat,lon), then a row per frame or image"
        )
    return resolved


_KEY_COLUMNS = frozenset({"id", "uri", "reel", "frame", "camera_index"})


class _Keys:
    """The live images that positions CSV rows name. A reel's frames are read in one query, on its first row:
    a solution lists every frame of a reel, and one query per row would be one round trip per frame."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.reels: dict[str, dict[int, list[tuple[int | None, str]]]] = {}

    def images_of(self, row: dict[str, str]) -> list[str]:
        if row.get("id") or row.get("uri"):
            named = (
                images.c.id == short_ids.resolve(self.conn, images.c.id, row["id"], "image")
                if row.get("id")
                else images.c.uri == row["uri"]
            )
            ids = [str(image_id) for image_id in self.conn.scalars(self._live(named))]
            every_camera = False
        elif row.get("reel") and row.get("frame"):
            cameras = self._frames(row["reel"]).get(parse_value("frame", row["frame"]), [])
            if row.get("camera_index"):
                camera = parse_value("camera_index", row["camera_index"])
                cameras = [(index, i) for index, i in cameras if index == camera]
            ids = [image_id for _, image_id in cameras]
            every_camera = not row.get("camera_index")
        else:
            raise ConfigError("name the image by id, uri, or reel and frame")
        if not ids or (len(ids) > 1 and not every_camera):
            raise ConfigError(
                f"{'no image' if not ids else f'{len(ids)} images'} match {_describe(row, _KEY_COLUMNS)}"
            )
        return ids

    def _frames(self, reel: str) -> dict[int, list[tuple[int | None, str]]]:
        if reel not in self.reels:
            frames: dict[int, list[tuple[int | None, str]]] = {}
            query = self._live(images.c.reel == reel, images.c.frame, images.c.camera_index)
            for image_id, frame, camera_index in self.conn.execute(query):
                frames.setdefault(frame, []).append((camera_index, str(image_id)))
            self.reels[reel] = frames
        return self.reels[reel]

    @staticmethod
    def _live(condition: sa.ColumnElement[bool], *columns: sa.ColumnElement[Any]) -> sa.Select[Any]:
        return sa.select(images.c.id, *columns).where(condition, images.c.deleted == sa.false())


def _describe(row: dict[str, str], keys: AbstractSet[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.items() if k in keys and v)


def edited_since(
    conn: sa.Connection, subjects: Sequence[tuple[Subject, datetime]], fields: Collection[str] | None = None
) -> set[str]:
    """The ids of ``subjects`` any of whose frames had an edit (of one of ``fields``, when given) made or
    undone after the time given with it."""
    since = {frame.id: (subject.id, moment) for subject, moment in subjects for frame in subject.frames}
    found: set[str] = set()
    for chunk in batched(since, CHUNK):
        query = (
            sa.select(edits.c.image_id, sa.func.max(edits.c.created_at), sa.func.max(edits.c.undone_at))
            .where(edits.c.image_id.in_(chunk), *([edits.c.field.in_(fields)] if fields is not None else []))
            .group_by(edits.c.image_id)
        )
        for image_id, created, undone in conn.execute(query):
            subject, moment = since[image_id]
            if created > moment or (undone is not None and undone > moment):
                found.add(subject)
    return found


__all__ = [
    "MEMBERSHIP_FIELDS",
    "NOTHING_TO_CHANGE",
    "apply",
    "batches",
    "current_author",
    "edited_since",
    "history",
    "plan",
    "resolve_keys",
    "undo",
]
