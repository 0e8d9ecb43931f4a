"""The track checks: pure functions over the numpy arrays of one track (one camera of one reel, in capture
order). Definitions and defaults are in docs/qc.md; thresholds in :class:`~panopipe.qc.settings.QcSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from panopipe.qc.geometry import to_metres
from panopipe.qc.settings import QcSettings

WINDOW = 7
"""Frames in the running median of each coordinate (odd)."""
PASSES = 4
"""Most passes of the deviation from good neighbours (see :func:`_outliers`)."""


@dataclass
class TrackCheck:
    """What the checks found on one track of ``n`` frames: per flag, a mask and the measured value."""

    n: int
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)
    time_mode: bool = False
    message: str | None = None
    # The frames with a usable position (indices into the track), their metres and segments (between breaks).
    points: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    segment: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    time_gap: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    """Per frame: its sequence break is a gap in time (seconds), not in distance (metres)."""

    def set(self, name: str, mask: np.ndarray, value: np.ndarray | None = None) -> None:
        """Record flag ``name``: its mask over the frames and the values measured (NaN: none)."""
        self.masks[name] = mask
        self.values[name] = np.full(self.n, np.nan) if value is None else value


def _scatter(
    n: int, points: np.ndarray, mask: np.ndarray, value: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A track-long mask and value from those of its ``points``."""
    full_mask = np.zeros(n, dtype=bool)
    full_value = np.full(n, np.nan)
    full_mask[points] = mask
    full_value[points] = np.where(mask, value, np.nan)
    return full_mask, full_value


def _shift(a: np.ndarray, k: int, fill: float = np.nan) -> np.ndarray:
    """``a[i + k]`` at ``i`` (``fill`` past the ends)."""
    out = np.full(a.shape, fill, dtype=np.result_type(a, type(fill)))
    if k > 0:
        out[:-k] = a[k:]
    elif k < 0:
        out[-k:] = a[:k]
    else:
        out[:] = a
    return out


def _running_median(values: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """The running median of ``values`` over :data:`WINDOW` frames within each segment; each end is extended
    by point reflection, so that a straight or steadily curving track is its own median."""
    half = WINDOW // 2
    out = np.empty_like(values)
    starts = np.flatnonzero(np.diff(segment, prepend=-1))
    ends = np.append(starts[1:], len(values))
    for start, end in zip(starts, ends, strict=True):
        part = values[start:end]
        if len(part) < 3:
            out[start:end] = part
            continue
        reach = min(half, len(part) - 1)
        left = 2 * part[0] - part[reach:0:-1]
        right = 2 * part[-1] - part[-2 : -reach - 2 : -1]
        padded = np.concatenate(
            [np.repeat(left[:1], half - reach), left, part, right, np.repeat(right[-1:], half - reach)]
        )
        windows = np.lib.stride_tricks.sliding_window_view(padded, WINDOW)
        out[start:end] = np.median(windows, axis=1)
    return out


def neighbour(good: np.ndarray, segment: np.ndarray, forward: bool) -> np.ndarray:
    """For each point, the index of the nearest good point before it (after it when ``forward``) in its
    segment; -1 where there is none."""
    m = len(good)
    index = np.arange(m)
    if forward:
        candidates = np.where(good, index, m)[::-1]
        nearest = np.minimum.accumulate(candidates)[::-1]
        nearest = _shift(nearest.astype(float), 1, m).astype(np.intp)
        nearest[nearest >= m] = -1
    else:
        nearest = np.maximum.accumulate(np.where(good, index, -1))
        nearest = _shift(nearest.astype(float), -1, -1).astype(np.intp)
    ok = nearest >= 0
    ok[ok] = segment[nearest[ok]] == segment[ok]
    return np.where(ok, nearest, -1)


def _breaks(x: np.ndarray, y: np.ndarray, t: np.ndarray, s: QcSettings) -> tuple[np.ndarray, ...]:
    """Where a new sequence starts (a mask over points), the gap before it (seconds or metres) and whether
    that gap is one of time.

    A time gap is a longer interval than ``break_gap_s``; a distance gap is a jump farther than
    ``break_gap_m`` that the track does not come back from: every pair of the 3 points before and the 3 from
    the point on are that far apart (so that an outlier, which jumps and comes back, is no break).
    """
    dt = np.diff(t, prepend=np.nan)
    time_gap = dt > s.break_gap_s
    nearest = np.full(len(x), np.inf)
    for before in (1, 2, 3):
        for after in (0, 1, 2):
            d = np.hypot(_shift(x, after) - _shift(x, -before), _shift(y, after) - _shift(y, -before))
            nearest = np.fmin(nearest, d)
    distance_gap = np.isfinite(nearest) & (nearest > s.break_gap_m)
    leg = np.hypot(np.diff(x, prepend=np.nan), np.diff(y, prepend=np.nan))
    return time_gap | distance_gap, np.where(time_gap, dt, leg), time_gap


def interpolated(
    x: np.ndarray, y: np.ndarray, t: np.ndarray, before: np.ndarray, after: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The position of each point on the line through points ``before`` and ``after`` (index arrays, -1 for
    none: NaN; interpolated between them, or extrapolated when the point is not between them), placed by
    capture time where the three times are in frame order, else by frame count."""
    ok = (before >= 0) & (after >= 0) & (before != after)
    b, a = np.where(ok, before, 0), np.where(ok, after, 1)
    index = np.arange(len(x))
    span_t = t[a] - t[b]
    by_time = (np.sign(span_t) == np.sign(a - b)) & (np.sign(t - t[b]) == np.sign(index - b))
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(by_time, (t - t[b]) / span_t, (index - b) / (a - b))
    px = np.where(ok, x[b] + (x[a] - x[b]) * fraction, np.nan)
    py = np.where(ok, y[b] + (y[a] - y[b]) * fraction, np.nan)
    return px, py


def _residual(
    x: np.ndarray, y: np.ndarray, t: np.ndarray, good: np.ndarray, segment: np.ndarray
) -> np.ndarray:
    """How far each point is from where the good points around it put it: the least of its distances from the
    position interpolated between the nearest good points on either side, and from those extrapolated from the
    two nearest on one side (so that a sudden stop or a neighbour's wrong time is not taken for an outlier)."""
    before, after = neighbour(good, segment, False), neighbour(good, segment, True)
    before2 = np.where(before >= 0, before[np.maximum(before, 0)], -1)
    after2 = np.where(after >= 0, after[np.maximum(after, 0)], -1)
    residual = np.full(len(x), np.inf)
    for first, second in ((before, after), (before2, before), (after, after2)):
        px, py = interpolated(x, y, t, first, second)
        residual = np.fmin(residual, np.hypot(x - px, y - py))
    return np.where(np.isfinite(residual), residual, np.nan)


def _turn(x: np.ndarray, y: np.ndarray, before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, ...]:
    """The turn angle (degrees) at each point between its legs from ``before`` and to ``after``, both legs'
    lengths and the length of the leg that skips the point."""
    ok = (before >= 0) & (after >= 0)
    b, a = np.where(ok, before, 0), np.where(ok, after, 0)
    ux, uy, vx, vy = x - x[b], y - y[b], x[a] - x, y[a] - y
    heading_in, heading_out = np.arctan2(ux, uy), np.arctan2(vx, vy)
    turn = np.degrees(np.abs((heading_out - heading_in + np.pi) % (2 * np.pi) - np.pi))
    nan = np.nan
    return (
        np.where(ok, turn, nan),
        np.where(ok, np.hypot(ux, uy), nan),
        np.where(ok, np.hypot(vx, vy), nan),
        np.where(ok, np.hypot(x[a] - x[b], y[a] - y[b]), nan),
    )


def _outliers(
    x: np.ndarray, y: np.ndarray, t: np.ndarray, segment: np.ndarray, s: QcSettings
) -> tuple[np.ndarray, np.ndarray]:
    """GPS outliers among the points, and how far each is off (metres).

    First, the deviation from the running median of each coordinate, which a few outliers in a row do not
    move. Then, among the rest, the deviation from the position interpolated between the nearest good points
    (a frame moved along the track), kept where it is the largest of its neighbours'; and a frame reached and
    left at an implausible speed or acceleration, or through a spike sharper than ``max_turn_deg``.
    """
    deviation = np.hypot(x - _running_median(x, segment), y - _running_median(y, segment))
    # An outlier shifts its neighbours' medians by up to one spacing: only the largest deviation around counts.
    around = np.fmax.reduce([_shift(deviation, k) for k in range(-(WINDOW // 2), WINDOW // 2 + 1)])
    off_median = (deviation > s.outlier_deviation_m) & (deviation >= around)
    outlier, value = off_median, np.where(off_median, deviation, 0.0)
    # Each pass measures every frame against the neighbours the last pass found good: it finds an outlier
    # that one beside it hid, and clears a good frame that only an outlier's (or a wrong clock's)
    # extrapolation put off; until nothing changes, in at most PASSES.
    for _ in range(PASSES):
        good = ~outlier
        residual = np.where(off_median, np.nan, _residual(x, y, t, good, segment))
        before, after = neighbour(good, segment, False), neighbour(good, segment, True)
        nearby = np.fmax(
            np.where(before >= 0, residual[np.maximum(before, 0)], np.nan),
            np.where(after >= 0, residual[np.maximum(after, 0)], np.nan),
        )
        along = (residual > s.outlier_deviation_m) & ~(nearby > residual)
        settled = np.array_equal(outlier, off_median | along)
        outlier = off_median | along
        value = np.where(along, residual, np.where(off_median, deviation, 0.0))
        if settled:
            break
    good = ~outlier
    before, after = neighbour(good, segment, False), neighbour(good, segment, True)
    turn, leg_in, leg_out, skip = _turn(x, y, before, after)
    b, a = np.maximum(before, 0), np.maximum(after, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        dt_in, dt_out = t - t[b], t[a] - t
        speed_in, speed_out = leg_in / dt_in, leg_out / dt_out
        speed_skip = skip / (t[a] - t[b])
        excess = np.fmin(speed_in, speed_out) - speed_skip
        fast = (speed_in > s.max_speed_mps) & (speed_out > s.max_speed_mps) & (speed_skip <= s.max_speed_mps)
        jerky = excess / ((dt_in + dt_out) / 2) > s.max_accel_mps2
    in_order = (t[b] < t) & (t < t[a])  # speeds mean nothing across a clock jump
    fast, jerky = fast & in_order, jerky & in_order
    spike = (turn > s.max_turn_deg) & (np.fmin(leg_in, leg_out) > np.fmax(skip, s.duplicate_m))
    extra = good & (fast | jerky | spike)
    if extra.any():  # how far off these are: from where their neighbours put them
        value = np.where(extra, _residual(x, y, t, good & ~extra, segment), value)
    return outlier | extra, value


def _runs(small_leg: np.ndarray, min_frames: int) -> np.ndarray:
    """Points that end a leg marked in ``small_leg`` within a run of at least ``min_frames`` frames."""
    padded = np.concatenate([[False], small_leg, [False]]).astype(np.int8)
    edges = np.diff(padded)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long_runs = (ends - starts + 1) >= min_frames
    marks = np.zeros(len(small_leg) + 1, dtype=np.int32)
    np.add.at(marks, starts[long_runs], 1)
    np.add.at(marks, ends[long_runs], -1)
    return np.cumsum(marks)[:-1] > 0


def _spread(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    if len(values) < 4:
        return 0.0
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return float((q3 - q1) / median) if median > 0 else np.inf


def check_track(
    t: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    heading: np.ndarray,
    settings: QcSettings,
    accuracy: np.ndarray | None = None,
) -> TrackCheck:
    """Check one track: capture times (seconds, NaN when unknown), positions (degrees, NaN when unknown),
    headings (degrees, NaN when unknown) and horizontal accuracies (metres, NaN or None when unknown) of its
    frames in capture order."""
    s = settings
    n = len(t)
    result = TrackCheck(n, time_gap=np.zeros(n, dtype=bool))
    positioned = np.isfinite(lat) & np.isfinite(lon)
    null = positioned & (np.abs(lat) <= s.null_island_deg) & (np.abs(lon) <= s.null_island_deg)
    result.set("no-position", ~positioned)
    result.set("null-island", null)
    poor = positioned & (accuracy > s.max_accuracy_m) if accuracy is not None else np.zeros(n, dtype=bool)
    result.set("poor-accuracy", poor, accuracy)
    last_seen = _shift(_ffill(t), -1)
    backwards = np.isfinite(t) & np.isfinite(last_seen) & (t < last_seen)
    result.set("time-backwards", backwards, np.where(backwards, last_seen - t, np.nan))
    points = np.flatnonzero(positioned & ~null)
    names = ("gps-outlier", "duplicate", "stationary", "sequence-break")
    for name in names:
        result.set(name, np.zeros(n, dtype=bool))
    if len(points) < 2:
        result.message = f"{len(points)} frame(s) with a position: too few to check the track"
        return result
    x, y, _ = to_metres(lat[points], lon[points])
    tt = t[points]
    brk, gap, by_time = _breaks(x, y, tt, s)
    result.time_gap = _scatter(n, points, by_time, gap)[0]
    segment = np.cumsum(brk)
    outlier, off = _outliers(x, y, tt, segment, s)
    leg = np.hypot(np.diff(x, prepend=np.nan), np.diff(y, prepend=np.nan))
    leg[brk] = np.nan
    still = _runs((leg < s.stationary_m)[1:], s.stationary_min_frames)
    stationary = np.concatenate([[False], still])
    turned = np.abs((heading[points] - _shift(heading[points], -1) + 180) % 360 - 180)
    same_way = ~(turned > s.duplicate_heading_deg)  # unknown headings do not tell frames apart
    duplicate = (leg < s.duplicate_m) & same_way & ~stationary & ~outlier
    result.set("gps-outlier", *_scatter(n, points, outlier, off))
    result.set("duplicate", *_scatter(n, points, duplicate, leg))
    result.set("stationary", *_scatter(n, points, stationary, leg))
    result.set("sequence-break", *_scatter(n, points, brk, gap))
    result.points, result.x, result.y, result.segment = points, x, y, segment
    moving = ~brk & ~outlier & ~_shift(outlier, -1, True)
    legs = leg[moving & ~stationary]
    dense = len(legs) > 0 and float(np.nanmedian(legs)) < s.thin_spacing_m / 2
    result.time_mode = _spread(np.diff(tt)[moving[1:]]) <= s.time_mode_spread and (
        dense or _spread(legs) > s.time_mode_spread
    )
    return result


def _ffill(values: np.ndarray) -> np.ndarray:
    """``values`` with each NaN replaced by the last value before it."""
    index = np.where(np.isfinite(values), np.arange(len(values)), 0)
    np.maximum.accumulate(index, out=index)
    return np.where(np.isfinite(values[index]), values[index], np.nan)


__all__ = ["PASSES", "WINDOW", "TrackCheck", "check_track", "interpolated", "neighbour"]
