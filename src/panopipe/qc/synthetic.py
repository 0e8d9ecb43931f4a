"""A synthetic track with known faults and a route with points at known measures, for the tests and
bench/bench_qc.py: the demo's corridor
(:mod:`panopipe.demo`: its start, time and 5 m spacing) driven for ``frames`` frames at a varying speed, with
GNSS noise and the accuracy a receiver reports, and with outliers, duplicates, stationary runs, gaps,
null-island fixes, clock jumps and poor fixes injected at known frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from panopipe.catalog.routes import Route
from panopipe.demo import START, STEP_M
from panopipe.qc.geometry import local_projection, to_degrees

START_BEARING = 65.0


@dataclass(frozen=True)
class SyntheticTrack:
    """Times (seconds after the start), positions, headings and horizontal accuracies of the frames, and per
    flag the frames that truly have it (``truth``)."""

    t: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    heading: np.ndarray
    truth: dict[str, np.ndarray]
    accuracy: np.ndarray

    def __len__(self) -> int:
        return len(self.t)


RATES = {
    "gps-outlier": 0.01,
    "duplicate": 0.005,
    "stationary": 0.0005,
    "sequence-break": 0.0005,
    "null-island": 0.0005,
    "time-backwards": 0.0005,
}
"""Injected faults per base frame (a stationary run adds 10 to 40 frames; a gap is in time or in distance)."""
POOR_ACCURACY_RATE = 0.005
"""Frames whose reported accuracy is poor (6 to 40 m, an urban canyon), among all frames; the others report
0.5 to 2.5 m."""


def synthetic_track(frames: int = 2000, *, time_mode: bool = False, seed: int = 14) -> SyntheticTrack:
    """About ``frames`` frames along a meandering corridor; ``time_mode`` captures one frame a second at a speed
    between 1 and 15 m/s instead of one every 5 m."""
    rng = np.random.default_rng(seed)
    n = frames
    i = np.arange(n)
    turn = 1.5 * np.sin(i / 60.0) + 0.8 * np.sin(i / 23.0)  # degrees per frame: gentle bends
    bearing = START_BEARING + np.cumsum(turn)
    speed = 9.0 + 6.0 * np.sin(i / 200.0) * (0.6 + 0.4 * np.sin(i / 37.0))  # m/s, 3 to 15
    if time_mode:
        step, dt = np.clip(speed - 2.0, 1.0, None), np.ones(n)
    else:
        step, dt = np.full(n, STEP_M), STEP_M / speed
    x = np.concatenate([[0.0], np.cumsum(step * np.sin(np.radians(bearing)))[:-1]])
    y = np.concatenate([[0.0], np.cumsum(step * np.cos(np.radians(bearing)))[:-1]])
    t = np.concatenate([[0.0], np.cumsum(dt)[:-1]])
    # GNSS error drifts slowly: an AR(1) process of about 0.3 m with 0.1 m steps.
    noise = np.zeros((n, 2))
    kicks = rng.normal(0.0, 0.1, (n, 2))
    for k in range(1, n):
        noise[k] = 0.95 * noise[k - 1] + kicks[k]
    x, y = x + noise[:, 0], y + noise[:, 1]
    heading = np.mod(bearing, 360.0)

    # Faults go at base frames at least 12 apart, each its own kind.
    slots = np.arange(12, n - 12, 12)
    counts = {name: max(1, round(rate * n)) for name, rate in RATES.items()}
    chosen = rng.choice(slots, size=min(len(slots), sum(counts.values())), replace=False)
    at: dict[str, np.ndarray] = {}
    start = 0
    for name, count in counts.items():
        at[name] = np.sort(chosen[start : start + count])
        start += count
    kinds = np.array(["gap-time", "gap-distance"])[rng.integers(0, 2, len(at["sequence-break"]))]

    offset = rng.uniform(5.0, 60.0, len(at["gps-outlier"]))
    angle = rng.uniform(0, 2 * np.pi, len(offset))
    x[at["gps-outlier"]] += offset * np.sin(angle)
    y[at["gps-outlier"]] += offset * np.cos(angle)
    jump = np.zeros(n)
    jump[at["sequence-break"][kinds == "gap-time"]] = rng.uniform(
        60.0, 600.0, int((kinds == "gap-time").sum())
    )
    t = t + np.cumsum(jump)
    t[at["time-backwards"]] = t[at["time-backwards"] - 1] - rng.uniform(1.0, 5.0, len(at["time-backwards"]))

    # Dropped frames make distance gaps; copies make duplicates (one) and stationary runs (10 to 40).
    keep = np.ones(n, dtype=bool)
    for gap in at["sequence-break"][kinds == "gap-distance"]:
        keep[gap - 40 : gap] = False
    copies = np.zeros(n, dtype=np.intp)
    copies[at["duplicate"]] = 1
    copies[at["stationary"]] = rng.integers(10, 41, len(at["stationary"]))
    copies[~keep] = 0
    repeat = np.where(keep, 1 + copies, 0)
    source = np.repeat(i, repeat)
    first = np.concatenate([[True], source[1:] != source[:-1]])
    order = np.arange(len(source)) - np.maximum.accumulate(np.where(first, np.arange(len(source)), 0))
    stationary_copy = copies[source] > 1
    pause = np.where(stationary_copy, 1.0, 0.1) * order
    tt = t[source] + pause + _later(source, copies, stationary_copy)
    jitter = rng.normal(0.0, 0.05, (len(source), 2)) * (~first)[:, None]
    xx, yy = x[source] + jitter[:, 0], y[source] + jitter[:, 1]
    transformer = local_projection(*START)
    lat, lon = to_degrees(transformer, xx, yy)
    hh = heading[source]

    where = {name: np.isin(source, at[name]) & first for name in at}
    truth = {
        "gps-outlier": np.flatnonzero(where["gps-outlier"]),
        "duplicate": np.flatnonzero(np.isin(source, at["duplicate"]) & ~first),
        "stationary": np.flatnonzero(np.isin(source, at["stationary"]) & ~first),
        "sequence-break": np.flatnonzero(where["sequence-break"]),
        "null-island": np.flatnonzero(where["null-island"]),
        "time-backwards": np.flatnonzero(where["time-backwards"]),
    }
    lat[truth["null-island"]] = rng.uniform(-0.001, 0.001, len(truth["null-island"]))
    lon[truth["null-island"]] = rng.uniform(-0.001, 0.001, len(truth["null-island"]))
    # drawn last, so that the other faults fall where they did before accuracies were reported
    accuracy = rng.uniform(0.5, 2.5, len(source))
    poor = max(1, round(POOR_ACCURACY_RATE * len(source)))
    truth["poor-accuracy"] = np.sort(rng.choice(len(source), size=poor, replace=False))
    accuracy[truth["poor-accuracy"]] = rng.uniform(6.0, 40.0, poor)
    return SyntheticTrack(tt, lat, lon, hh, truth, accuracy)


def _later(source: np.ndarray, copies: np.ndarray, stationary: np.ndarray) -> np.ndarray:
    """The time each frame is delayed by the copies inserted before it (stationary ones last a second each)."""
    added = np.where(copies > 1, copies * 1.0, copies * 0.1)
    before = np.concatenate([[0.0], np.cumsum(added)[:-1]])
    return before[source]


@dataclass(frozen=True)
class SyntheticRoute:
    """A centerline without M values (measured from ``start_measure`` km), and points beside it whose
    measures and signed offsets (metres, positive to the right) are known."""

    route: Route
    lat: np.ndarray
    lon: np.ndarray
    measure: np.ndarray
    offset_m: np.ndarray


def synthetic_route(
    points: int = 1000, *, vertices: int = 200, spacing_m: float = 250.0, seed: int = 1
) -> SyntheticRoute:
    """A meandering route of ``vertices`` from the demo's start, ``spacing_m`` apart (geodesic), measured in
    km from 10.0, and ``points`` points 0.5 to 20 m to either side of it, placed with geodesic directions."""
    import pyproj

    geod = pyproj.Geod(ellps="WGS84")
    lat, lon = START
    line = [(lon, lat)]
    bearing = START_BEARING
    for vertex_number in range(vertices - 1):
        bearing += 12.0 * np.sin(vertex_number / 9.0)
        lon, lat, _ = geod.fwd(lon, lat, bearing, spacing_m)
        line.append((lon, lat))
    rng = np.random.default_rng(seed)
    vertex = np.asarray(line)
    k = rng.integers(0, vertices - 1, points)
    fraction = rng.uniform(0.05, 0.95, points)
    side = rng.choice([-1.0, 1.0], points) * rng.uniform(0.5, 20.0, points)
    azimuth, _, length = geod.inv(vertex[k, 0], vertex[k, 1], vertex[k + 1, 0], vertex[k + 1, 1])
    on_lon, on_lat, back = geod.fwd(vertex[k, 0], vertex[k, 1], azimuth, fraction * length)
    out_lon, out_lat, _ = geod.fwd(on_lon, on_lat, back + 180 + np.sign(side) * 90, np.abs(side))
    _, _, legs = geod.inv(vertex[:-1, 0], vertex[:-1, 1], vertex[1:, 0], vertex[1:, 1])
    measure = 10.0 + (np.concatenate([[0.0], np.cumsum(legs)])[k] + fraction * length) / 1000
    route = Route("SYN-1", tuple(line), None, 10.0, "km")
    return SyntheticRoute(route, np.asarray(out_lat), np.asarray(out_lon), measure, side)


def precision_recall(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Precision and recall of the frames ``found`` (indices) against the frames ``truth``."""
    hits = len(np.intersect1d(found, truth))
    precision = hits / len(found) if len(found) else 1.0
    recall = hits / len(truth) if len(truth) else 1.0
    return precision, recall


__all__ = [
    "POOR_ACCURACY_RATE",
    "RATES",
    "START_BEARING",
    "SyntheticRoute",
    "SyntheticTrack",
    "precision_recall",
    "synthetic_route",
    "synthetic_track",
]
