"""The thresholds of ``panopipe qc``: the ``[qc]`` table of the project configuration, with their defaults.

Each key is a field of :class:`QcSettings`; its ``help`` metadata documents it (and the configuration reference).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from panopipe.config import check_names, config_key
from panopipe.errors import ConfigError


@dataclass(frozen=True)
class QcSettings:
    """Thresholds of the track checks (metres, seconds, degrees); the defaults suit a vehicle at road speed."""

    outlier_deviation_m: float = config_key(
        4.0, "A frame farther than this from the position interpolated from its neighbours is a gps-outlier."
    )
    max_speed_mps: float = config_key(
        70.0,
        "Reaching a frame and leaving it faster than this (m/s) while its neighbours are not: gps-outlier.",
    )
    max_accel_mps2: float = config_key(
        12.0, "Speeding up and slowing down by more than this (m/s²) to pass through a frame: gps-outlier."
    )
    max_turn_deg: float = config_key(
        160.0,
        "A turn sharper than this (degrees, up to 180) through a frame whose legs are both longer than the one "
        "skipping it: gps-outlier.",
    )
    duplicate_m: float = config_key(
        0.5, "A frame within this distance of the previous one is a near-duplicate..."
    )
    duplicate_heading_deg: float = config_key(
        15.0, "...if its heading is also within this angle (up to 180, when both have one)."
    )
    stationary_m: float = config_key(
        1.0, "Frames each within this distance of the previous one are stationary..."
    )
    stationary_min_frames: int = config_key(
        5, "...when at least this many follow each other (the first is kept)."
    )
    break_gap_s: float = config_key(
        30.0, "A time gap longer than this (s) starts a new sequence: sequence-break."
    )
    break_gap_m: float = config_key(
        100.0, "A jump farther than this that the track does not come back from: sequence-break."
    )
    null_island_deg: float = config_key(
        0.01, "Latitude and longitude both within this of 0 (degrees, up to 90): null-island."
    )
    max_accuracy_m: float = config_key(
        5.0, "A frame whose horizontal accuracy (gps_accuracy_m) is worse than this (m): poor-accuracy."
    )
    thin_spacing_m: float = config_key(
        5.0, "qc --fix thins time-mode reels to about this spacing along the track."
    )
    time_mode_spread: float = config_key(
        0.25,
        "A reel is time-mode when its intervals spread (IQR/median) less than this, and its spacing more (or is dense).",
    )

    @classmethod
    def from_config(cls, table: Mapping[str, Any]) -> QcSettings:
        """The settings of a ``[qc]`` table: unknown keys, values that are not finite numbers above 0, and
        counts that are not whole numbers are errors."""
        check_names(table, [f.name for f in fields(cls)], section="qc")
        counts = {f.name for f in fields(cls) if f.type in (int, "int")}
        for name, value in table.items():
            kind = int if name in counts else int | float
            if (
                isinstance(value, bool)
                or not isinstance(value, kind)
                or not math.isfinite(value)
                or value <= 0
            ):
                expected = "a whole number" if name in counts else "a number"
                raise ConfigError(f"[qc] {name} = {value!r}: expected {expected} > 0")
            if value > _MAXIMA.get(name, math.inf):
                raise ConfigError(f"[qc] {name} = {value!r}: expected a number > 0, up to {_MAXIMA[name]:g}")
        return replace(cls(), **table)

    def has_fix(self, lat: float | None, lon: float | None) -> bool:
        """Whether a frame at ``lat``, ``lon`` has a position that counts: one, and not within
        ``null_island_deg`` of 0, 0 (what a receiver without a fix reports; qc flags it null-island)."""
        if lat is None or lon is None:
            return False
        return not (abs(lat) <= self.null_island_deg and abs(lon) <= self.null_island_deg)


_MAXIMA = {"max_turn_deg": 180.0, "duplicate_heading_deg": 180.0, "null_island_deg": 90.0}
"""The thresholds that have a largest meaningful value: angles between two directions, and a latitude."""

__all__ = ["QcSettings"]
