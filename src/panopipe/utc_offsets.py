"""The UTC offsets time zones use (IANA's time zone database, standard and daylight-saving time, including
Venezuela's -04:30 of 2007-2016): a camera's clock is set to one of them, so an offset outside them, inferred
from a clock that drifted or typed into an edit, is a mistake."""

from __future__ import annotations

UTC_OFFSETS_IN_USE: frozenset[int] = frozenset(
    {
        *(hours * 60 for hours in range(-12, 15)),
        -9 * 60 - 30,
        -4 * 60 - 30,
        -3 * 60 - 30,
        -2 * 60 - 30,
        3 * 60 + 30,
        4 * 60 + 30,
        5 * 60 + 30,
        5 * 60 + 45,
        6 * 60 + 30,
        8 * 60 + 45,
        9 * 60 + 30,
        10 * 60 + 30,
        12 * 60 + 45,
        13 * 60 + 45,
    }
)
"""UTC offsets in minutes, east positive."""


def offset_text(minutes: int) -> str:
    """``minutes`` east of UTC as ``+05:45``."""
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


__all__ = ["UTC_OFFSETS_IN_USE", "offset_text"]
