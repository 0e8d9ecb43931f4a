"""Grouping the frames of a reel into shots: the frames of one rig captured together, one per camera.

Frames are taken in capture-time order; a frame joins the open shot when it is within the tolerance of the
shot's first frame and its camera is not in the shot yet, else it opens a new one. A *run* of frames ends
where the next frame is more than the tolerance later: no shot spans two runs, so a new frame can change the
shots of its own runs only, and regrouping those gives what regrouping the whole reel gives.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from panopipe.catalog.object_events import Action, AppliedChange, ObjectChange
from panopipe.catalog.schema import images
from panopipe.catalog.subjects import touch_shots
from panopipe.catalog.types import utcnow

FEW_NAMES = 16
FEW_UPDATES = 64
"""Up to this many frames whose shot changes are updated in one statement (``CASE``), more one by one."""
UNCHANGING = (Action.UNCHANGED, Action.DUPLICATE, Action.SKIPPED, Action.FAILED)


def regroup_applied(
    conn: sa.Connection, applied: Sequence[tuple[ObjectChange, AppliedChange]], tolerance_s: float
) -> None:
    """Regroup the shots of the reels that ``applied`` object events changed: around the changed frames (their
    capture times as read), and the whole reel where an image the events changed is deleted (the shots then
    depend on the frames left, not on the order the events came in)."""
    changed = [a.image_id for _, a in applied if a.action not in UNCHANGING and a.image_id]
    if not changed:
        return
    frames: dict[str | None, dict[str, datetime | None]] = {}  # per reel, changed frames' capture times
    for change, result in applied:
        # a removal that moved its image to a copy wrote the copy's record
        record = (
            change.successor if change.record is None and result.action is Action.UPDATED else change.record
        )
        if (
            result.action not in UNCHANGING
            and result.image_id
            and record is not None
            and record.reel is not None
        ):
            frames.setdefault(record.reel, {})[result.image_id] = record.captured_at
    # Only a removal deletes an image (a creation undeletes it), so only reels with a removal are read back.
    deleted = [a.image_id for _, a in applied if a.action is Action.DELETED and a.image_id]
    removed: set[str | None] = set()
    if deleted:
        query = (
            sa.select(images.c.reel).distinct().where(images.c.id.in_(deleted), images.c.deleted == sa.true())
        )
        removed = set(conn.execute(query).scalars())
    for reel in {*frames, *(removed - {None})}:
        assign_reel_shots(conn, reel, tolerance_s, None if reel in removed else frames[reel])


def assign_reel_shots(
    conn: sa.Connection,
    reel: str | None,
    tolerance_s: float,
    around: Mapping[str, datetime | None] | None = None,
) -> int:
    """Group the frames of one reel into shots (see :meth:`Catalog.assign_shots`); how many changed.

    ``around`` (the frames that changed: image id -> capture time as read) limits the reading and regrouping
    to the runs that hold them. The whole reel is regrouped instead when the frames read do not show where
    those runs end, when a changed frame has no or another capture time (an edit), or when a shot name the
    runs get is taken elsewhere in the reel (names are unique per reel: the earlier shot keeps the plain one).
    """
    c = images.c
    query = (
        sa.select(c.id, c.captured_at, c.camera_index, c.frame, c.shot, c.captured, c.status)
        .where(c.reel == reel if reel is not None else c.reel.is_(None), c.deleted == sa.false())
        .order_by(c.captured_at, c.camera_index, c.frame)
    )
    window = _Window.read(conn, query, tolerance_s, around) if around else None
    rows = conn.execute(query).all() if window is None else window.runs
    shots = _name(reel, _group(rows, tolerance_s))
    if window is not None and window.taken(conn, query, {shot for _, shot in shots if shot is not None}):
        rows = conn.execute(query).all()
        shots = _name(reel, _group(rows, tolerance_s))
    # A file that could not be read is in no shot: with no capture time, it made a shot of its own.
    shots += [(row, None) for row in rows if row.status != "ok" and not _shot_edited(row)]
    updates = {row.id: shot for row, shot in shots if row.shot != shot}
    if 0 < len(updates) <= FEW_UPDATES:  # an event batch's frames: one statement, not one per frame
        shot_of = sa.case(*((c.id == image_id, shot) for image_id, shot in updates.items()), else_=c.shot)
        conn.execute(images.update().where(c.id.in_(list(updates))).values(shot=shot_of))
    elif updates:
        params = [{"_id": image_id, "shot": shot} for image_id, shot in updates.items()]
        conn.execute(
            images.update().where(c.id == sa.bindparam("_id")).values(shot=sa.bindparam("shot")), params
        )
    # Frames that left a shot (for another, or none): the planner finds a stale shot from its frames'
    # changes, and the frames that stayed in the shot they left, or in the one they joined, did not change.
    moved = [(row.shot, shot) for row, shot in shots if row.shot != shot and row.shot is not None]
    touch_shots(conn, {name for pair in moved for name in pair if name is not None}, utcnow())
    return len(updates)


def unshot_reels(conn: sa.Connection) -> set[str | None]:
    """The reels that hold frames grouping would put in a shot and that are in none: readable, not deleted,
    their shot not set by an edit, with a capture time or a reel and a frame number. An ingest stopped after
    writing its images and before grouping them leaves such frames, which nothing else reads again.

    One query on the shot index: once grouped, a catalog's frames without a shot are its unreadable files
    and those an edit took out of their shots, few of them."""
    c = images.c
    shot_edited = (
        sa.type_coerce(c.captured, postgresql.JSONB).has_key("shot")
        if conn.dialect.name == "postgresql"
        else sa.func.json_type(c.captured, "$.shot").is_not(None)
    )
    query = (
        sa.select(c.reel)
        .distinct()
        .where(
            c.shot.is_(None),
            c.status == "ok",
            c.deleted == sa.false(),
            sa.or_(c.captured_at.is_not(None), sa.and_(c.reel.is_not(None), c.frame.is_not(None))),
            sa.or_(c.captured.is_(None), sa.not_(shot_edited)),
        )
    )
    return set(conn.execute(query).scalars())


@dataclass(frozen=True, slots=True)
class _Window:
    """The frames read from ``low`` to ``high`` (capture time), and the runs among them that hold the changed
    frames."""

    rows: Sequence[Any]
    runs: Sequence[Any]
    low: datetime
    high: datetime

    @classmethod
    def read(
        cls,
        conn: sa.Connection,
        query: sa.Select[Any],
        tolerance_s: float,
        around: Mapping[str, datetime | None],
    ) -> _Window | None:
        """The frames near the ``around`` frames; ``None`` when they cannot show where the runs holding
        those end (see :func:`assign_reel_shots`)."""
        times = [time for time in around.values() if time is not None]
        if len(times) < len(around):
            return None
        first, last = min(times), max(times)
        margin = timedelta(seconds=2 * tolerance_s)
        low, high = first - margin, last + margin
        c = images.c
        rows = conn.execute(
            query.where(sa.or_(c.captured_at.between(low, high), c.id.in_(list(around))))
        ).all()
        if {row.id: row.captured_at for row in rows if row.id in around} != dict(around):
            return None
        frames = [row for row in rows if not _shot_edited(row)]
        t = [row.captured_at for row in frames]

        def ends_before(i: int) -> bool:
            """Whether a run ends before ``frames[i]``; frames not read are before ``low`` or after ``high``."""
            before = t[i - 1] if i > 0 else low
            after = t[i] if i < len(t) else high
            return (after - before).total_seconds() > tolerance_s

        start = next((i for i in range(bisect_left(t, first), -1, -1) if ends_before(i)), None)
        end = next((i for i in range(bisect_right(t, last), len(t) + 1) if ends_before(i)), None)
        return None if start is None or end is None else cls(rows, frames[start:end], low, high)

    def taken(self, conn: sa.Connection, query: sa.Select[Any], names: set[str]) -> bool:
        """Whether a frame of the reel outside the runs has one of ``names`` as its shot, or one of them with a
        suffix: those read are looked at here, the others in the database (for more than :data:`FEW_NAMES`
        names, any other frame counts: the whole reel is regrouped unless the frames read are all of it)."""
        suffixed = tuple(f"{name}." for name in names)
        runs = {row.id for row in self.runs}
        read = (row.shot or "" for row in self.rows if row.id not in runs)
        if any(shot in names or shot.startswith(suffixed) for shot in read):
            return True
        c = images.c
        outside = sa.or_(c.captured_at.is_(None), c.captured_at < self.low, c.captured_at > self.high)
        others = query.with_only_columns(c.id).order_by(None).where(outside).limit(1)
        if len(names) <= FEW_NAMES:
            clash = (c.shot.startswith(prefix, autoescape=True) for prefix in suffixed)
            others = others.where(sa.or_(c.shot.in_(names), *clash))
        return conn.execute(others).first() is not None


def _shot_edited(row: Any) -> bool:
    return bool(row.captured and "shot" in row.captured)


def _group(rows: Sequence[Any], tolerance_s: float) -> list[list[Any]]:
    """``rows`` (in capture-time order) grouped into shots; frames whose shot was edited, and files that
    could not be read, are left out."""
    groups: list[list[Any]] = []
    cameras: set[int | None] = set()  # of the last group
    for row in rows:
        if _shot_edited(row) or row.status != "ok":
            continue
        group = groups[-1] if groups else None
        if (
            group is not None
            and row.captured_at is not None
            and group[0].captured_at is not None
            and (row.captured_at - group[0].captured_at).total_seconds() <= tolerance_s
            and row.camera_index not in cameras
        ):
            group.append(row)
        else:
            groups.append([row])
            cameras.clear()
        cameras.add(row.camera_index)
    return groups


_SHOT_NAME = re.compile(r"(?P<reel>.+?)(?:-\d{6,}|@\d{8}T\d{6}\.\d{6}Z)(?:\.\d+)?")
"""A shot's name as :func:`_name` makes it: ``REEL-000042`` (the lowest frame) or ``REEL@20240501T083000.000000Z``
(the capture time of a shot without frame numbers; ``shot@...`` without a reel), ``.2`` after a repeated name."""


def shot_reel(name: str) -> str | None:
    """The reel that ``name`` would be a shot of (``R001`` of ``R001-000042``), ``None`` if ``name`` is not
    written as panopipe names shots (an image id, a typo...) or names a shot without a reel."""
    match = _SHOT_NAME.fullmatch(name)
    return match["reel"] if match and not name.startswith("shot@") else None


def _name(reel: str | None, groups: Sequence[Sequence[Any]]) -> list[tuple[Any, str | None]]:
    """Each frame of ``groups`` with its shot: the reel and the shot's lowest frame number (else its time),
    with a suffix when an earlier shot has that name."""
    shots: list[tuple[Any, str | None]] = []
    used: set[str] = set()
    for group in groups:
        frames = [g.frame for g in group if g.frame is not None]
        base = f"{reel}-{min(frames):06d}" if reel is not None and frames else None
        if base is None and group[0].captured_at is not None:
            base = f"{reel or 'shot'}@{group[0].captured_at:%Y%m%dT%H%M%S.%f}Z"
        shot = base
        suffix = 1
        while shot in used:
            suffix += 1
            shot = f"{base}.{suffix}"
        if shot is not None:
            used.add(shot)
        shots += [(g, shot) for g in group]
    return shots


__all__ = [
    "FEW_NAMES",
    "FEW_UPDATES",
    "UNCHANGING",
    "assign_reel_shots",
    "regroup_applied",
    "shot_reel",
    "unshot_reels",
]
