"""``panopipe qc``: check each reel's track, store the flags, and with ``fix`` propose one edit batch."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from panopipe.catalog import Catalog, FieldChange, Selection
from panopipe.catalog.flags import Flag
from panopipe.catalog.types import dashed, new_id
from panopipe.qc.checks import check_track
from panopipe.qc.fix import propose_fix
from panopipe.qc.flag_names import FLAGS
from panopipe.qc.settings import QcSettings

QC_VERSION = "2"
"""Stored with each flag: changes when the checks change what they find."""

ORDER = ("reel", "camera_index", "frame", "captured_at")
"""Capture order within a reel: by camera, then frame number (time when frames have no number)."""
FIELDS = (
    "id",
    "reel",
    "camera_index",
    "shot",
    "captured_at",
    "lat",
    "lon",
    "heading",
    "gps_accuracy_m",
    "excluded",
)
"""The image fields qc reads."""


@dataclass
class ReelSummary:
    """What qc found on one reel: frames checked, per flag how many, and messages for people."""

    reel: str | None
    frames: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FLAGS, 0))
    time_mode: bool = False
    moved: int = 0
    thinned: int = 0
    messages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "reel": self.reel,
            "frames": self.frames,
            **self.counts,
            "time_mode": self.time_mode,
            "moved": self.moved,
            "thinned": self.thinned,
            "messages": self.messages,
        }


@dataclass(frozen=True)
class QcReport:
    """The reels checked, the flags found, the edit proposed (and its batch id once applied)."""

    reels: tuple[ReelSummary, ...]
    flags: tuple[Flag, ...]
    changes: tuple[FieldChange, ...]
    batch: str | None
    dry_run: bool


_UNITS = {
    "gps-outlier": "m off the track",
    "duplicate": "m from the previous frame",
    "stationary": "m from the previous frame",
    "time-backwards": "s before the previous frame",
    "poor-accuracy": "m horizontal accuracy",
}


def _detail(name: str, value: float, time_gap: bool) -> str | None:
    if not np.isfinite(value):
        return None
    if name == "sequence-break":
        return (
            f"{value:.1f} s after the previous frame"
            if time_gap
            else f"{value:.1f} m from the previous frame"
        )
    return f"{value:.2f} {_UNITS[name]}"


@dataclass(frozen=True)
class _Frames:
    """The checked images column by column (see :meth:`Catalog.columns`), with the numbers as arrays (NaN
    when unknown)."""

    columns: dict[str, list[Any]]
    t: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    heading: np.ndarray
    accuracy: np.ndarray

    @classmethod
    def of(cls, columns: dict[str, list[Any]]) -> _Frames:
        def array(name: str) -> np.ndarray:
            return np.array(columns[name], dtype=float)  # None becomes NaN

        fields = ("captured_at", "lat", "lon", "heading", "gps_accuracy_m")
        return cls(columns, *map(array, fields))

    def tracks(self) -> list[tuple[str | None, list[slice]]]:
        """Per reel, the frames of each of its cameras (consecutive in capture order)."""
        spans: list[tuple[Any, slice]] = []
        start = 0
        for key, group in itertools.groupby(
            zip(self.columns["reel"], self.columns["camera_index"], strict=True)
        ):
            stop = start + sum(1 for _ in group)
            spans.append((key[0], slice(start, stop)))
            start = stop
        return [
            (reel, [span for _, span in group])
            for reel, group in itertools.groupby(spans, key=lambda s: s[0])
        ]


def _check_reel(
    reel: str | None, tracks: list[slice], frames: _Frames, settings: QcSettings, fix: bool
) -> tuple[ReelSummary, list[Flag], list[FieldChange]]:
    summary = ReelSummary(reel, frames=sum(track.stop - track.start for track in tracks))
    flags: list[Flag] = []
    changes: list[FieldChange] = []
    thinned = [np.zeros(0, dtype=np.intp) for _ in tracks]  # per track, the frames its thinning drops
    for number, track in enumerate(tracks):
        ids = frames.columns["id"][track]
        t, lat, lon, heading = frames.t[track], frames.lat[track], frames.lon[track], frames.heading[track]
        check = check_track(t, lat, lon, heading, settings, frames.accuracy[track])
        if check.message and check.message not in summary.messages:
            summary.messages.append(check.message)
        summary.time_mode |= check.time_mode
        for name, mask in check.masks.items():
            found = np.flatnonzero(mask)
            summary.counts[name] += len(found)
            values = check.values[name]
            flags += [
                Flag(dashed(ids[i]), name, _number(values[i]), _detail(name, values[i], check.time_gap[i]))
                for i in found
            ]
        if not fix or not len(check.points):
            continue

        def old(name: str, i: int, start: int = track.start) -> Any:
            return frames.columns[name][start + i]

        proposal = propose_fix(check, t, lat, lon, heading, settings.thin_spacing_m)
        for i, new_lat, new_lon, new_heading in zip(
            proposal.moved, proposal.lat, proposal.lon, proposal.heading, strict=True
        ):
            wanted = {"lat": round(float(new_lat), 7), "lon": round(float(new_lon), 7)}
            wanted["heading"] = float(new_heading)
            changes += [FieldChange(dashed(ids[i]), k, old(k, i), v) for k, v in wanted.items()]
        thinned[number] = track.start + proposal.thinned
        summary.moved += len(proposal.moved)
        if len(proposal.unfixable):
            summary.messages.append(
                f"{len(proposal.unfixable)} outlier(s) at the end of a sequence left as they are: "
                "no good frame after (or before) them to interpolate from"
            )
    columns = frames.columns
    excluded = _whole_shots(columns["shot"], tracks, thinned)
    changes += [
        FieldChange(dashed(columns["id"][i]), "excluded", columns["excluded"][i], True) for i in excluded
    ]
    summary.thinned = len(excluded)
    if summary.counts["no-position"]:
        summary.messages.append(
            f"{summary.counts['no-position']} frame(s) without a position: not on the track"
        )
    return summary, flags, [c for c in changes if c.old != c.new]


def _whole_shots(shots: list[str | None], tracks: list[slice], thinned: list[np.ndarray]) -> list[int]:
    """The frames thinning excludes, a rig shot's all together (a shot with one camera's frame left out
    cannot be stitched): the frames of a shot whose frame of the reel's first camera that camera's thinning
    drops; none of a shot that camera has no frame on the track in. A frame of no shot is its own camera's
    to thin."""
    dropped = {shots[i] for i in thinned[0]} - {None}
    own = set(itertools.chain.from_iterable(thinned))
    return [
        i
        for track in tracks
        for i in range(track.start, track.stop)
        if (shots[i] in dropped if shots[i] is not None else i in own)
    ]


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def run_qc(
    catalog: Catalog,
    selection: Selection | None = None,
    settings: QcSettings | None = None,
    *,
    fix: bool = False,
    dry_run: bool = False,
    author: str = "panopipe qc",
    progress: Callable[[int, int], None] | None = None,
) -> QcReport:
    """Check the track of every reel the selection holds (each camera of a rig on its own) and replace the qc
    flags of the images checked, in one transaction. With ``fix``, also propose corrected positions for the
    outliers and the thinning of time-mode reels, recorded as one edit batch in the same transaction
    (undo it with ``panopipe undo``). With ``dry_run`` nothing is written.

    The selected images are checked on their reels' whole tracks (a frame is an outlier against its
    neighbours, which a filter such as ``--flag gps-outlier`` or ``--id`` leaves out); only their flags are
    replaced, and only they are edited (the reels' summaries are of their whole tracks). Images of no reel
    are checked among the selected ones."""
    settings = settings or QcSettings()
    selection = selection or Selection()
    # qc checks the images whose metadata could be read: those with status ok.
    columns = (
        {name: [] for name in FIELDS}
        if selection.status == "failed"
        else catalog.columns(replace(selection, status="ok"), FIELDS, sort=ORDER)
    )
    chosen: list[str] | None = None  # the selected images, when their reels' tracks are read whole
    touched = tuple(sorted({reel for reel in columns["reel"] if reel is not None}))
    if touched and not selection.selects_all and None not in columns["reel"]:
        chosen = columns["id"]
        columns = catalog.columns(Selection(reels=touched, status="ok"), FIELDS, sort=ORDER)
    frames = _Frames.of(columns)
    reels = frames.tracks()
    summaries: list[ReelSummary] = []
    flags: list[Flag] = []
    changes: list[FieldChange] = []
    for done, (reel, tracks) in enumerate(reels, start=1):
        summary, found, proposed = _check_reel(reel, tracks, frames, settings, fix)
        summaries.append(summary)
        flags += found
        changes += proposed
        if progress:
            progress(done, len(reels))
    if chosen is not None:
        kept = {dashed(image_id) for image_id in chosen}
        flags = [flag for flag in flags if flag.image_id in kept]
        changes = [change for change in changes if change.image_id in kept]
    batch = None
    if not dry_run:
        batch = catalog.record_qc(
            columns["id"] if chosen is None else chosen,
            tuple(FLAGS),
            flags,
            run=new_id(),
            qc_version=QC_VERSION,
            changes=changes,
            reason="panopipe qc --fix: outliers moved onto the track, time-mode reels thinned",
            author=author,
        )
    return QcReport(tuple(summaries), tuple(flags), tuple(changes), batch, dry_run)


__all__ = ["FIELDS", "ORDER", "QC_VERSION", "QcReport", "ReelSummary", "run_qc"]
