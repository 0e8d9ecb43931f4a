"""Placing images on a track by their capture times: position and height interpolated linearly between the
two track points around the time, as ``exiftool -geotag`` does (longitudes and headings the short way round),
and never across a gap between points longer than ``max_gap_s`` nor beyond the track's ends. A track's heading is the
vehicle's: a rig camera's is that turned by the camera's yaw in the rig profile."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from panopipe.catalog import Catalog, Selection
from panopipe.catalog.records import to_json_value
from panopipe.catalog.types import dashed
from panopipe.catalog.values import rounded
from panopipe.config import Settings
from panopipe.errors import ConfigError, NotFoundError
from panopipe.geotag.tracks import Track

DEFAULT_MAX_GAP_S = 10.0
"""A GNSS outage longer than this is not bridged: a straight line is no guess for ten seconds of driving."""


@dataclass(frozen=True, slots=True)
class NotPlaced:
    """A selected image the track cannot place, at its capture time (after any shift), and why: the reason's
    start up to `` (`` is the same for all images left out for the same reason."""

    image_id: str
    captured_at: datetime | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict keyed as ``edit --json`` keys its changes (``id``); the time ISO 8601 UTC with ``Z``."""
        return {"id": self.image_id, "captured_at": to_json_value(self.captured_at), "reason": self.reason}


@dataclass
class TrackEdit:
    """What placing the selected images on a track sets: ``per_image`` values for
    :meth:`Catalog.plan_edit`, how many images were ``placed``, and those ``not_placed``."""

    per_image: dict[str, dict[str, Any]] = field(default_factory=dict)
    placed: int = 0
    not_placed: list[NotPlaced] = field(default_factory=list)
    headings_kept: dict[int, int] = field(default_factory=dict)
    """Placed images that kept their heading because the rig has no yaw for their camera: count by index."""
    taken_as_utc: int = 0
    """Placed images whose capture time has no UTC offset (no OffsetTimeOriginal nor GPS time to infer it):
    the camera's clock as read, taken as UTC."""

    def warnings(self) -> list[str]:
        """One line per thing the user should know about the placement: images not placed, headings kept,
        times taken as UTC."""
        lines = []
        if self.not_placed:
            reasons = Counter(item.reason.partition(" (")[0] for item in self.not_placed)
            lines.append(
                f"{len(self.not_placed)} of {self.placed + len(self.not_placed)} image(s) not placed on the "
                "track, left where they are: "
                + "; ".join(f"{n} {reason}" for reason, n in reasons.items())
                + " (the edit's --json output lists them)"
            )
        if self.headings_kept:
            cameras = ", ".join(map(str, sorted(self.headings_kept)))
            lines.append(
                f"{sum(self.headings_kept.values())} image(s) of camera(s) {cameras} kept their heading: the "
                "track's is the vehicle's, and no rig profile ([steps.stitch.rig]) gives those cameras' yaw"
            )
        if self.taken_as_utc:
            lines.append(
                f"{self.taken_as_utc} of {self.placed} placed image(s) have a capture time of unknown UTC offset "
                "(no OffsetTimeOriginal or GPS time): placed as if their camera's clock were on UTC. If it was on "
                "local time, undo this edit, correct their times and offset (for UTC+02:00: panopipe edit "
                "--shift-time -2h --set utc_offset_minutes=120) and place them again"
            )
        return lines


def _within_180(degrees: np.ndarray) -> np.ndarray:
    """Angles of -540 to 540 degrees as -180 to 180 (others unchanged, to the last bit)."""
    return np.where(degrees > 180.0, degrees - 360.0, np.where(degrees < -180.0, degrees + 360.0, degrees))


_ANGLES = {"heading": lambda degrees: degrees % 360.0, "lon": _within_180}
"""Fields interpolated the short way round (179.9999 to -179.9999 across the antimeridian, 350 to 10 through
north), and how a value is brought back into the field's range."""


def values_at(track: Track, times: np.ndarray, max_gap_s: float) -> tuple[dict[str, np.ndarray], list[str]]:
    """Each of the track's fields at ``times`` (POSIX seconds; NaN where the track cannot place a time), and
    per time ``""`` or the reason it cannot."""
    t = np.asarray(times, dtype=float)
    last = len(track.times) - 1
    after = np.clip(np.searchsorted(track.times, t, side="left"), 0, last)
    before = np.clip(after - 1, 0, last)
    exact = track.times[after] == t
    before = np.where(exact, after, before)
    gap = track.times[after] - track.times[before]
    weight = np.divide(t - track.times[before], gap, out=np.zeros_like(t), where=gap > 0)
    placed = exact | ((t > track.times[0]) & (t < track.times[-1]) & (gap <= max_gap_s))
    values: dict[str, np.ndarray] = {}
    for name, column in track.values.items():
        if name == "gps_accuracy_m":  # between two points, the worse of their accuracies
            value = np.maximum(column[before], column[after])
        else:
            step = column[after] - column[before]
            if name in _ANGLES:
                value = _ANGLES[name](column[before] + weight * _within_180(step))
            else:
                value = column[before] + weight * step
        values[name] = np.where(placed, value, np.nan)
    reasons = [
        "" if ok else _reason(track, moment, span, max_gap_s)
        for ok, moment, span in zip(placed, t, gap, strict=True)
    ]
    return values, reasons


def _reason(track: Track, moment: float, gap: float, max_gap_s: float) -> str:
    if np.isnan(moment):
        return "no capture time"
    if moment < track.times[0]:
        return f"before the track starts ({_iso(track.times[0])})"
    if moment > track.times[-1]:
        return f"after the track ends ({_iso(track.times[-1])})"
    return f"in a gap between track points ({gap:.1f} s, over --max-gap {max_gap_s:g} s)"


def _iso(seconds: float) -> str:
    return str(to_json_value(datetime.fromtimestamp(float(seconds), UTC)))


def track_edit(
    catalog: Catalog,
    selection: Selection,
    track: Track,
    *,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    shift_time_s: float = 0.0,
    camera_yaws: Mapping[int, float] | None = None,
) -> TrackEdit:
    """The values that place the selected images on ``track`` at their capture times, moved by
    ``shift_time_s`` first (a camera clock that was off; the moved times are set too, on every image). The
    frames of a rig shot are placed together or not at all.

    A track's heading is set as it is on an image without a camera index (a 360° camera's), and turned by
    ``camera_yaws[index]`` (the rig profile's yaw of each camera) on a rig's frame; a frame whose camera has
    no yaw there keeps its heading (counted in ``headings_kept``).

    A :class:`ConfigError` when the track places none of them: a track of another day, or a clock off by
    more than the track's span, says so rather than editing nothing; a :class:`NotFoundError` when the
    selection holds no image."""
    if max_gap_s < 0:
        raise ConfigError(f"max gap must be 0 seconds or more, got {max_gap_s:g}")
    yaws = camera_yaws or {}
    columns = catalog.columns(selection, ("id", "captured_at", "utc_offset_minutes", "camera_index", "shot"))
    if not columns["id"]:
        raise NotFoundError(catalog.no_match(selection))
    ids = [dashed(digits) for digits in columns["id"]]
    times = np.array([np.nan if t is None else t + shift_time_s for t in columns["captured_at"]], dtype=float)
    values, reasons = values_at(track, times, max_gap_s)
    _hold_back_partial_shots(columns["shot"], reasons)
    result = TrackEdit()
    for i, image_id in enumerate(ids):
        wanted: dict[str, Any] = {}
        captured = None if np.isnan(times[i]) else datetime.fromtimestamp(times[i], UTC)
        if shift_time_s and captured is not None:
            wanted["captured_at"] = captured
        if reasons[i]:
            result.not_placed.append(NotPlaced(image_id, captured, reasons[i]))
        else:
            result.placed += 1
            if columns["utc_offset_minutes"][i] is None:
                result.taken_as_utc += 1
            camera = columns["camera_index"][i]
            for name, column in values.items():
                value = float(column[i])
                if name == "heading" and camera is not None and not np.isnan(value):
                    if camera not in yaws:
                        result.headings_kept[camera] = result.headings_kept.get(camera, 0) + 1
                        continue
                    value = (value + yaws[camera]) % 360.0
                if not np.isnan(value):
                    wanted[name] = rounded(name, value)
        if wanted:
            result.per_image[image_id] = wanted
    if not result.placed:
        raise ConfigError(_nothing_placed(track, ids, times, columns["utc_offset_minutes"], shift_time_s))
    return result


def _hold_back_partial_shots(shots: list[str | None], reasons: list[str]) -> None:
    """Leave every frame of a rig shot where it is when the track cannot place one of them (its cameras fire
    milliseconds apart, so a track's end or gap can fall between them): a shot with some frames moved would
    be stitched from frames in two places. Sets the reason of the frames held back."""
    first_reason: dict[str, str] = {}
    for shot, reason in zip(shots, reasons, strict=True):
        if shot is not None and reason:
            first_reason.setdefault(shot, reason)
    for i, shot in enumerate(shots):
        if shot in first_reason and not reasons[i]:
            reasons[i] = f"another frame of its rig shot is not placed ({shot}: {first_reason[shot]})"


def camera_yaws(catalog: Catalog, settings: Settings) -> dict[int, float]:
    """The yaw of each camera of the rig profile (``[steps.stitch.rig]``, from the catalog's project
    configuration first, as planners read it) by camera index; empty without a profile."""
    from panopipe.pipeline.config import load_pipeline
    from panopipe.steps.stitch import configured_rig

    rig = configured_rig(load_pipeline(catalog, settings, ["stitch"]).context.tables)
    return {camera.index: camera.yaw_deg for camera in rig.cameras} if rig else {}


def _nothing_placed(
    track: Track, ids: list[str], times: np.ndarray, offsets: list[int | None], shift_time_s: float
) -> str:
    timed = ~np.isnan(times)
    if not timed.any():
        return f"none of the {len(ids)} selected images has a capture time to place it on the track by"
    moved = f" (moved by {shift_time_s:+g} s)" if shift_time_s else ""
    unknown = sum(1 for ok, offset in zip(timed, offsets, strict=True) if ok and offset is None)
    zone = (
        f"; {unknown} of them have a capture time of unknown UTC offset, taken as UTC: a camera clock on local "
        "time is off by its offset"
        if unknown
        else ""
    )
    return (
        f"the track {track.source} ({_iso(track.times[0])} to {_iso(track.times[-1])}) places none of the "
        f"{len(ids)} selected images, captured{moved} {_iso(times[timed].min())} to {_iso(times[timed].max())}: "
        f"another day's track, or a camera clock that was off (--shift-time moves capture times)?{zone}"
    )


__all__ = [
    "DEFAULT_MAX_GAP_S",
    "NotPlaced",
    "TrackEdit",
    "camera_yaws",
    "track_edit",
    "values_at",
]
