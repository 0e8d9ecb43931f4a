"""Subjects: what one job of a step works on, which shots and 360° images a selection covers, and their frames.

A shot subject is every image with that ``shot`` whose projection is not equirectangular (the frames of one
rig capture); an image subject is one image whose projection is ``equirectangular`` (a single 360° image,
which needs no stitching). Images with neither, and images an edit excluded (``qc --fix`` thinning), are not
processed.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import itertools
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable

from panopipe.catalog.bulk import read_columns
from panopipe.catalog.records import IMAGE_COLUMNS, Image
from panopipe.catalog.schema import ID, images
from panopipe.catalog.selection import Selection
from panopipe.catalog.types import UTCDateTime
from panopipe.iterutil import batched

SubjectKind = Literal["shot", "image"]
EQUIRECTANGULAR = "equirectangular"
KINDS: tuple[SubjectKind, ...] = ("shot", "image")
CHUNK = 500
FEW_IDS = 100


@dataclass(frozen=True, slots=True)
class Stray:
    """A frame of a shot's reel and frame number that is not in the shot (:attr:`Subject.strays`): camera
    ``camera_index``'s file at ``uri``, which ingest could not read (``error``, why; it is in no shot), or which
    is in another ``shot`` or none, put there by an edit or not (``edited``), captured ``apart_s`` seconds after
    the shot's first frame of that frame number (``None`` where a capture time is unknown)."""

    camera_index: int
    uri: str
    shot: str | None
    error: str | None
    edited: bool
    apart_s: float | None


@dataclass(frozen=True, slots=True)
class Subject:
    """What one job of a step works on: a rig shot (its frames by camera index) or one 360° image.

    ``strays`` are, for a shot that may lack a camera's frame, the frames of its reel and frame numbers that are
    elsewhere (see :func:`load_subjects`): where the frame it lacks went."""

    id: str
    frames: tuple[Image, ...]
    strays: tuple[Stray, ...] = ()

    @property
    def kind(self) -> SubjectKind:
        return "shot" if self.id.startswith("shot:") else "image"

    @property
    def key(self) -> str:
        """The shot id or image id."""
        return self.id.partition(":")[2]


def subject_id(kind: SubjectKind, key: str) -> str:
    """``shot:<key>`` or ``image:<key>``."""
    return f"{kind}:{key}"


def kind_condition(kind: SubjectKind) -> sa.ColumnElement[bool]:
    """Images that belong to subjects of ``kind``."""
    return sa.and_(form_condition(kind), images.c.excluded == sa.false())


def form_condition(kind: SubjectKind) -> sa.ColumnElement[bool]:
    """Images of the form of subjects of ``kind`` (a rig shot's frames, or 360° images), excluded or not."""
    c = images.c
    if kind == "image":
        return c.projection == EQUIRECTANGULAR
    return sa.and_(c.shot.is_not(None), sa.or_(c.projection.is_(None), c.projection != EQUIRECTANGULAR))


def touch_shots(conn: sa.Connection, shots: Collection[str], now: datetime) -> None:
    """Mark every frame of ``shots`` as changed at ``now`` (a frame left them or joined them): the shots are
    candidates for planning again."""
    for chunk in batched(sorted(shots), CHUNK):
        conn.execute(images.update().where(images.c.shot.in_(chunk)).values(updated_at=now))


def key_column(kind: SubjectKind) -> sa.ColumnElement[Any]:
    """The images column that names a subject of ``kind``."""
    return images.c.shot if kind == "shot" else images.c.id


def create_selected(conn: sa.Connection, selection: Selection, kind: SubjectKind) -> sa.Table:
    """A temporary table of the subjects of ``kind`` the selection touches: ``key`` and ``changed`` (the
    latest ``updated_at`` of their selected images). A shot is selected when any of its frames is; its
    deleted frames count too, so that deleting a frame makes the shot's outputs candidates."""
    table = sa.Table(
        f"panopipe_selected_{kind}",
        sa.MetaData(),
        sa.Column("key", sa.String(200) if kind == "shot" else ID, primary_key=True),
        sa.Column("changed", UTCDateTime, nullable=False),
        prefixes=["TEMPORARY"],
    )
    table.drop(conn, checkfirst=True)
    if selection.near is None:
        conn.execute(_CreateTemporaryAs(table.name, _selected_query(selection, kind)))
        return table
    table.create(conn)
    columns = [key_column(kind).label("key"), images.c.updated_at, images.c.lat, images.c.lon]
    near = sa.select(*columns).where(*_selected_conditions(selection, kind))
    latest: dict[Any, Any] = {}
    for row in conn.execute(near):
        if selection.matches(row):
            latest[row.key] = max(latest.get(row.key, row.updated_at), row.updated_at)
    for chunk in batched(latest.items(), CHUNK):
        conn.execute(table.insert(), [{"key": k, "changed": v} for k, v in chunk])
    return table


def _selected_conditions(selection: Selection, kind: SubjectKind) -> tuple[sa.ColumnElement[bool], ...]:
    if kind == "shot":
        selection = dataclasses.replace(selection, include_deleted=True)
    return (kind_condition(kind), *selection.where())


def _selected_query(selection: Selection, kind: SubjectKind) -> sa.Select[Any]:
    """``key`` and ``changed`` of the subjects of ``kind`` that ``selection`` (without ``near``) touches."""
    key = key_column(kind)
    if kind == "shot":
        query = sa.select(key.label("key"), sa.func.max(images.c.updated_at).label("changed")).group_by(key)
    else:
        query = sa.select(key.label("key"), images.c.updated_at.label("changed"))
    return query.where(*_selected_conditions(selection, kind))


class _CreateTemporaryAs(Executable, ClauseElement):
    """``CREATE TEMPORARY TABLE name AS SELECT ...``: PostgreSQL can run that SELECT in parallel, unlike an
    ``INSERT ... SELECT``."""

    inherit_cache = False

    def __init__(self, name: str, query: sa.Select[Any]) -> None:
        self.name = name
        self.query = query


@compiles(_CreateTemporaryAs)
def _compile_create_temporary_as(element: _CreateTemporaryAs, compiler: Any, **kw: Any) -> str:
    return f"CREATE TEMPORARY TABLE {element.name} AS {compiler.process(element.query, **kw)}"


SELECTED_IDS = "selected_ids"
"""The parameter that carries the image ids of a selection of ids only (see :class:`Selected`)."""


class Selected(dict[SubjectKind, sa.FromClause]):
    """The subjects of every kind a selection touches (``key``, ``changed``), and the parameters that a
    statement reading them is executed with. ``shared`` tables are the same objects for every selection of
    a few ids only, their ids given by the parameters, so that statements built on them can be kept."""

    def __init__(
        self,
        tables: Mapping[SubjectKind, sa.FromClause],
        params: dict[str, Any] | None = None,
        *,
        shared: bool = False,
    ):
        super().__init__(tables)
        self.params = params or {}
        self.shared = shared
        self.known: dict[SubjectKind, set[Any]] = {}
        """Every selected subject of some kinds, by key, once a statement has read them all."""

    @property
    def few(self) -> bool:
        """Whether these are the subqueries of a few ids (see :func:`selected_subjects`), not tables."""
        return all(isinstance(table, sa.Subquery) for table in self.values())

    def keys_of(self, conn: sa.Connection, kind: SubjectKind) -> set[Any]:
        """Every selected subject of ``kind``, by key."""
        return set(conn.execute(sa.select(self[kind].c.key), self.params).scalars())


@contextlib.contextmanager
def selected_subjects(conn: sa.Connection, selection: Selection) -> Iterator[Selected]:
    """The subjects of every kind the selection touches: the temporary tables of :func:`create_selected`,
    dropped afterwards, or, for at most :data:`FEW_IDS` image ids (an event batch), subqueries that select the
    same rows, which need no statements of their own and compile once."""
    if selection.near is None and 0 < len(selection.ids) <= FEW_IDS:
        rest = dataclasses.replace(selection, ids=())
        if rest in (Selection(), Selection(include_deleted=True)):
            tables = {kind: _ids_selected(kind, selection.include_deleted) for kind in KINDS}
            yield Selected(tables, {SELECTED_IDS: list(selection.ids)}, shared=True)
        else:
            yield Selected(
                {kind: _selected_query(selection, kind).subquery(f"selected_{kind}") for kind in KINDS}
            )
        return
    temporary = {kind: create_selected(conn, selection, kind) for kind in KINDS}
    try:
        yield Selected(temporary)
    finally:
        for table in temporary.values():
            table.drop(conn)


@functools.cache
def _ids_selected(kind: SubjectKind, include_deleted: bool) -> sa.Subquery:
    """The subjects of ``kind`` that the image ids given as :data:`SELECTED_IDS` touch."""
    ids = images.c.id.in_(sa.bindparam(SELECTED_IDS, expanding=True))
    return (
        _selected_query(Selection(include_deleted=include_deleted), kind)
        .where(ids)
        .subquery(f"selected_{kind}")
    )


def load_subjects(
    conn: sa.Connection, kind: SubjectKind, keys: Iterable[Any], fields: Collection[str] | None = None
) -> Iterator[Subject]:
    """The subjects of ``kind`` named by ``keys`` with their frames (by camera index), deleted images left out:
    one query per :data:`CHUNK` subjects, its rows read column by column (:func:`read_columns`). A rig shot
    some frames of which are excluded is left out whole: stitched from all its frames, it is processed whole
    or not at all (an edit excludes them together, but a frame ingested after its shot was thinned, or an
    undo, may leave some excluded); one more query per chunk, on the shot index, finds them.

    With ``fields``, the frames carry only those fields (and ``uri``, ``content_hash`` and ``shot``; ``id``
    for image subjects, whose key it is): the others are not read, and reading one raises
    :class:`AttributeError` (a planner reads a fraction of the 36 columns; see
    :attr:`~panopipe.steps.base.Step.frame_fields`).

    Shots loaded with their camera indexes that may lack a camera's frame carry their :attr:`Subject.strays`:
    one more query per chunk, only when it has such shots, which are those whose camera indexes are not all of
    ``0`` to the highest index of the chunk's shots, or whose name repeats another's (``R001-000042.2``). A
    shot lacking only cameras that no shot of its chunk has (a camera missing from the whole chunk) is not
    looked at."""
    names = IMAGE_COLUMNS if fields is None else _frame_columns(frozenset(fields) | _KEY_FIELDS[kind])
    group_by = names.index("shot" if kind == "shot" else "id")
    query = _frames_query(kind, names)
    for chunk in batched(keys, CHUNK):
        values = read_columns(conn, query, {"keys": list(chunk)})
        # The columns are selected in the order of Image's fields.
        made = list(map(Image, *values)) if fields is None else _partial_images(names, values)
        partly = (
            set(conn.execute(_PARTLY_EXCLUDED, {"keys": list(chunk)}).scalars()) if kind == "shot" else ()
        )
        # The rows come ordered by subject: each subject's frames are one run of rows, counted at C speed.
        subjects: list[Subject] = []
        start = 0
        for key, count in collections.Counter(values[group_by]).items():
            if key not in partly:
                subjects.append(Subject(subject_id(kind, str(key)), tuple(made[start : start + count])))
            start += count
        if kind == "shot" and "camera_index" in names:
            subjects = _with_strays(conn, subjects, values[names.index("camera_index")])
        yield from subjects


_PARTLY_EXCLUDED = (
    sa.select(images.c.shot)
    .where(images.c.shot.in_(sa.bindparam("keys", expanding=True)), images.c.excluded == sa.true())
    .distinct()
)
"""The shots among ``keys`` with an excluded frame (:func:`load_subjects`)."""


_REPEATED_NAME = re.compile(r"\.\d+$")
"""A shot name with the suffix that grouping gives a name the reel has already (``R001-000042.2``)."""

_FRAME_NUMBERS = (
    sa.select(
        images.c.shot, images.c.reel, images.c.frame, sa.func.min(images.c.captured_at).label("first_at")
    )
    .where(
        images.c.shot.in_(sa.bindparam("keys", expanding=True)),
        images.c.deleted == sa.false(),
        images.c.frame.is_not(None),
    )
    .group_by(images.c.shot, images.c.reel, images.c.frame)
    .subquery("numbers")
)
_STRAY = images.alias("stray")
_STRAYS = (
    sa.select(
        _FRAME_NUMBERS.c.shot.label("of"),
        _FRAME_NUMBERS.c.first_at,
        *(
            _STRAY.c[name]
            for name in ("camera_index", "uri", "shot", "status", "error", "captured", "captured_at")
        ),
    )
    .join_from(
        _FRAME_NUMBERS,
        _STRAY,
        sa.and_(_STRAY.c.reel == _FRAME_NUMBERS.c.reel, _STRAY.c.frame == _FRAME_NUMBERS.c.frame),
    )
    .where(
        _STRAY.c.deleted == sa.false(),
        _STRAY.c.camera_index.is_not(None),
        sa.or_(_STRAY.c.shot.is_(None), _STRAY.c.shot != _FRAME_NUMBERS.c.shot),
    )
)
"""The frames of the reel and a frame number of the shots ``keys`` that are not in the shot, with that shot and
the first capture time of its frames of that number (``of``, ``first_at``): on the shot index, then on the
reel's, once per frame number of a shot (a rig's frames of one shot share theirs)."""


def _with_strays(conn: sa.Connection, shots: list[Subject], cameras: Iterable[int | None]) -> list[Subject]:
    """``shots``, those that may lack a camera's frame (see :func:`load_subjects`) with their strays; ``cameras``
    are the camera indexes of the frames read."""
    highest = max((index for index in cameras if index is not None), default=None)
    if highest is None:
        return shots
    lacking = {shot.key for shot in shots if _REPEATED_NAME.search(shot.key)}
    if any(len(shot.frames) != highest + 1 for shot in shots):  # else each has every camera, or one twice
        every = set(range(highest + 1))
        for shot in shots:
            indexes = {frame.camera_index for frame in shot.frames}
            if None not in indexes and indexes != every:  # a frame without one is another problem
                lacking.add(shot.key)
    if not lacking:
        return shots
    found: dict[str, list[Stray]] = {}
    for row in conn.execute(_STRAYS, {"keys": sorted(lacking)}):
        apart = (
            (row.captured_at - row.first_at).total_seconds()
            if row.captured_at is not None and row.first_at is not None
            else None
        )
        error = (row.error or row.status) if row.status != "ok" else None
        edited = bool(row.captured and "shot" in row.captured)
        found.setdefault(row.of, []).append(Stray(row.camera_index, row.uri, row.shot, error, edited, apart))
    return [
        dataclasses.replace(
            s, strays=tuple(sorted(found[s.key], key=lambda stray: (stray.camera_index, stray.uri)))
        )
        if s.key in found
        else s
        for s in shots
    ]


@functools.cache
def _frames_query(kind: SubjectKind, names: tuple[str, ...]) -> sa.Select[Any]:
    """The frames (columns ``names``) of the subjects of ``kind`` whose keys are given as ``keys``, by subject,
    camera index and URI (built once: every event batch's planning runs it)."""
    key = key_column(kind)
    return (
        sa.select(*(images.c[name] for name in names))
        .where(
            key.in_(sa.bindparam("keys", expanding=True)),
            kind_condition(kind),
            images.c.deleted == sa.false(),
        )
        .order_by(key, images.c.camera_index, images.c.uri)
    )


_KEY_FIELDS: dict[SubjectKind, frozenset[str]] = {"shot": frozenset(), "image": frozenset({"id"})}
"""The frame fields a partial load reads besides those asked for, by kind: the subject's key. A shot's frame
ids are left out (600,000 ids converted from SQLite's hex took a sixth of planning 100,000 shots)."""


@functools.cache
def _frame_columns(fields: frozenset[str]) -> tuple[str, ...]:
    unknown = fields - set(IMAGE_COLUMNS)
    if unknown:
        raise ValueError(f"not image columns: {', '.join(sorted(unknown))}")
    return tuple(name for name in IMAGE_COLUMNS if name in {"uri", "content_hash", "shot", *fields})


def _partial_images(names: Sequence[str], values: Sequence[Sequence[Any]]) -> list[Image]:
    """:class:`Image` records with only the fields ``names`` set, from their columns ``values`` (in that order):
    the others are left unset, so that reading one fails instead of giving a wrong value. Set column by column
    through the slots' descriptors (past the frozen ``__setattr__``), each in one pass at C speed."""
    images = list(map(object.__new__, itertools.repeat(Image, len(values[0]) if values else 0)))
    for name, column in zip(names, values, strict=True):
        collections.deque(map(getattr(Image, name).__set__, images, column), maxlen=0)
    return images


__all__ = [
    "CHUNK",
    "EQUIRECTANGULAR",
    "FEW_IDS",
    "KINDS",
    "SELECTED_IDS",
    "Selected",
    "Stray",
    "Subject",
    "SubjectKind",
    "create_selected",
    "form_condition",
    "key_column",
    "kind_condition",
    "load_subjects",
    "selected_subjects",
    "subject_id",
    "touch_shots",
]
