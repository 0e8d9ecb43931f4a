"""What ``panopipe qc --fix`` proposes for one track: outliers moved onto the track, their headings from the
corrected track, and time-mode tracks thinned to a target spacing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from panopipe.qc.checks import TrackCheck, interpolated, neighbour
from panopipe.qc.geometry import bearings, local_projection, to_degrees


@dataclass(frozen=True)
class TrackFix:
    """Per frame of the track (indices into it): the corrected positions and headings, the frames to exclude,
    and the outliers that could not be corrected (no good frame on one side)."""

    moved: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    heading: np.ndarray
    thinned: np.ndarray
    unfixable: np.ndarray


def _circular_mean(degrees: np.ndarray) -> float:
    radians = np.radians(degrees[np.isfinite(degrees)])
    if not len(radians):
        return 0.0
    return float(np.degrees(np.arctan2(np.sin(radians).mean(), np.cos(radians).mean())))


def propose_fix(
    check: TrackCheck, t: np.ndarray, lat: np.ndarray, lon: np.ndarray, heading: np.ndarray, spacing_m: float
) -> TrackFix:
    """Corrections for the track ``check`` found, from its times, positions and headings."""
    points, x, y, segment = check.points, check.x.copy(), check.y.copy(), check.segment
    outlier = check.masks["gps-outlier"][points]
    good = ~outlier
    tt = t[points]
    before, after = neighbour(good, segment, False), neighbour(good, segment, True)
    px, py = interpolated(x, y, tt, before, after)
    fixable = outlier & np.isfinite(px)
    x[fixable], y[fixable] = px[fixable], py[fixable]
    transformer = local_projection(float(np.median(lat[points])), float(np.median(lon[points])))
    new_lat, new_lon = to_degrees(transformer, x, y)
    new_lat = np.where(fixable, new_lat, lat[points])
    new_lon = np.where(fixable, new_lon, lon[points])
    # The bearing of the corrected track at each point, from the point before to the point after it.
    b = np.where(before >= 0, before, np.arange(len(points)))
    a = np.where(after >= 0, after, np.arange(len(points)))
    track = bearings(new_lat[b], new_lon[b], new_lat[a], new_lon[a])
    moving = good & (a != b) & (np.hypot(x[a] - x[b], y[a] - y[b]) > 1.0)
    offset = _circular_mean((heading[points] - track)[moving]) if np.isfinite(heading[points]).any() else 0.0
    moved = points[fixable]
    new_heading = np.round(np.mod(track[fixable] + offset, 360.0), 2)
    thinned = points[_thin(x, y, segment, spacing_m)] if check.time_mode else np.zeros(0, dtype=np.intp)
    return TrackFix(
        moved, new_lat[fixable], new_lon[fixable], new_heading, thinned, points[outlier & ~fixable]
    )


def _thin(x: np.ndarray, y: np.ndarray, segment: np.ndarray, spacing_m: float) -> np.ndarray:
    """Points to drop so that those kept are about ``spacing_m`` apart along the track: the first point at or
    past each multiple of the spacing is kept, and the first of each segment."""
    leg = np.hypot(np.diff(x, prepend=x[0]), np.diff(y, prepend=y[0]))
    leg[np.diff(segment, prepend=segment[0]) != 0] = spacing_m
    along = np.cumsum(leg)
    marks = np.arange(0.0, along[-1] + spacing_m, spacing_m)
    keep = np.unique(np.searchsorted(along, marks, side="left"))
    drop = np.ones(len(x), dtype=bool)
    drop[keep[keep < len(x)]] = False
    return drop


__all__ = ["TrackFix", "propose_fix"]
