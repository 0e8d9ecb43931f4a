"""The names of the flags ``panopipe qc`` sets and what each means (light: read by the selection too)."""

from __future__ import annotations

FLAGS: dict[str, str] = {
    "gps-outlier": "the position is off the track its neighbours draw (deviation, speed, acceleration or turn)",
    "duplicate": "a near-duplicate of the previous frame: as close and facing the same way",
    "stationary": "one of a run of frames taken without moving (the run's first frame is not flagged)",
    "sequence-break": "the first frame after a time or distance gap",
    "null-island": "the position is at or near latitude 0, longitude 0 (a receiver without a fix)",
    "time-backwards": "captured before the previous frame",
    "no-position": "the frame has no GPS position",
    "poor-accuracy": "the position's horizontal accuracy is worse than the survey needs",
}
"""Every flag ``panopipe qc`` sets, with its meaning (values and thresholds: docs/qc.md)."""

ROUTE_FLAGS: dict[str, str] = {
    "off-route": "farther from the route than `route locate --max-offset` allows: not located",
}
"""The flags ``panopipe route locate`` sets."""

ALL_FLAGS: dict[str, str] = {**FLAGS, **ROUTE_FLAGS}
"""Every flag an image can have (``ls --flag``)."""

__all__ = ["ALL_FLAGS", "FLAGS", "ROUTE_FLAGS"]
