"""A camera clock that was off: the shift ``edit --shift-time`` moves capture times by, as people write it."""

from __future__ import annotations

import math

from panopipe.errors import ConfigError

MAX_SHIFT_S = 100 * 365.25 * 86400
"""The largest shift taken, either way: a clock never set (a camera's default date) is off by decades, not more."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_time_shift(text: str) -> float:
    """Seconds of a shift written as a signed number and a unit (``+2s``, ``-1.5s``, ``250ms``, ``+1h``, ``3d``);
    a :class:`ConfigError` for anything else, a value that is not finite, or one beyond :data:`MAX_SHIFT_S`."""
    example = "expected e.g. +2s, -1.5s, 250ms, +1h, 3d"
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            try:
                seconds = float(text[: -len(unit)]) * _UNITS[unit]
            except ValueError:
                break
            if not math.isfinite(seconds):
                raise ConfigError(f"invalid --shift-time {text!r}: {example}")
            if abs(seconds) > MAX_SHIFT_S:
                raise ConfigError(f"invalid --shift-time {text!r}: at most 100 years (36525d) either way")
            return seconds
    raise ConfigError(f"invalid --shift-time {text!r}: {example}")


__all__ = ["MAX_SHIFT_S", "parse_time_shift"]
