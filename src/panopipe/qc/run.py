"""``panopipe qc``: check each reel's track, store the flags, and with ``fix`` propose one edit batch."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from panopipe.catalog import Catalog, FieldChange, Selection
from panopipe.catalog.flags import Flag
from panopipe.catalog.types import new_id
from panopipe.qc.checks import check_track
from panopipe.qc.fix import propose_fix
from panopipe.qc.flag_names import FLAGS
from panopipe.qc.settings import QcSettings

QC_VERSION = "1"
"""Stored with each flag: changes when the checks change what they find."""

ORDER = ("reel", "camera_index", "frame", "captured_at")
"""Capture order within a reel: by camera, then frame number (time when frames have no number)."""
FIELDS = ("id", "reel", "camera_index", "frame", "captured_at", "lat", "lon", "heading", "excluded", "status")
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


def _arrays(frames: Sequence[Any]) -> tuple[np.ndarray, ...]:
    def column(values: list[float | None]) -> np.ndarray:
        return np.array(values, dtype=float)  # None becomes NaN

    times = [f.captured_at.timestamp() if f.captured_at else None for f in frames]
    return (
        column(times),
        column([f.lat for f in frames]),
        column([f.lon for f in frames]),
        column([f.heading for f in frames]),
    )


def _check_reel(
    reel: str | None, tracks: list[list[Any]], settings: QcSettings, fix: bool
) -> tuple[ReelSummary, list[Flag], list[FieldChange]]:
    summary = ReelSummary(reel, frames=sum(map(len, tracks)))
    flags: list[Flag] = []
    changes: list[FieldChange] = []
    for frames in tracks:
        t, lat, lon, heading = _arrays(frames)
        check = check_track(t, lat, lon, heading, settings)
        if check.message and check.message not in summary.messages:
            summary.messages.append(check.message)
        summary.time_mode |= check.time_mode
        for name, mask in check.masks.items():
            found = np.flatnonzero(mask)
            summary.counts[name] += len(found)
            values = check.values[name]
            flags += [
                Flag(frames[i].id, name, _number(values[i]), _detail(name, values[i], check.time_gap[i]))
                for i in found
            ]
        if not fix or not len(check.points):
            continue
        proposal = propose_fix(check, t, lat, lon, heading, settings.thin_spacing_m)
        for i, new_lat, new_lon, new_heading in zip(
            proposal.moved, proposal.lat, proposal.lon, proposal.heading, strict=True
        ):
            image = frames[i]
            wanted = {"lat": round(float(new_lat), 7), "lon": round(float(new_lon), 7)}
            wanted["heading"] = float(new_heading)
            changes += [FieldChange(image.id, k, getattr(image, k), v) for k, v in wanted.items()]
        changes += [FieldChange(frames[i].id, "excluded", frames[i].excluded, True) for i in proposal.thinned]
        summary.thinned += len(proposal.thinned)
        summary.moved += len(proposal.moved)
        if len(proposal.unfixable):
            summary.messages.append(
                f"{len(proposal.unfixable)} outlier(s) at the end of a sequence left as they are: "
                "no good frame after (or before) them to interpolate from"
            )
    if summary.counts["no-position"]:
        summary.messages.append(
            f"{summary.counts['no-position']} frame(s) without a position: not on the track"
        )
    return summary, flags, [c for c in changes if c.old != c.new]


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
    (undo it with ``panopipe undo``). With ``dry_run`` nothing is written."""
    settings = settings or QcSettings()
    images = [i for i in catalog.rows(selection, FIELDS, sort=ORDER) if i.status == "ok"]
    reels = [(reel, list(group)) for reel, group in itertools.groupby(images, key=lambda i: i.reel)]
    summaries: list[ReelSummary] = []
    flags: list[Flag] = []
    changes: list[FieldChange] = []
    for done, (reel, frames) in enumerate(reels, start=1):
        tracks = [list(g) for _, g in itertools.groupby(frames, key=lambda i: i.camera_index)]
        summary, found, proposed = _check_reel(reel, tracks, settings, fix)
        summaries.append(summary)
        flags += found
        changes += proposed
        if progress:
            progress(done, len(reels))
    batch = None
    if not dry_run:
        batch = catalog.record_qc(
            [i.id for i in images],
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
